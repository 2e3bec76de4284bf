'use strict';
/**
 * JSON-RPC over one TCP connection: one JSON text per line, both ways. Replies are
 * matched to requests by id; after interconnect the node sends its own requests on the
 * same connection, which the channel's Answerer answers.
 *
 * A reply with id null is an error the node could not tie to a request (Invalid Request
 * for a request or batch member that is not a valid request, Parse error, Message too
 * large). The node answers the requests of a connection in the order they came, except
 * those that may wait (an `ask`, a blocking `get`, a batch with one), which run beside the
 * others; so such a reply (or a batch reply with no id of ours in it) answers the oldest
 * request still unanswered among those that do not wait, and settles it at once: a call
 * rejects with the node's error, a batch resolves with what the node answered. That
 * includes requests the node answers although they have no id (an invalid notification):
 * they hold their place in that order, so their answer settles nothing else.
 */

const net = require('net');
const { Channel, clearTimer, setTimer } = require('./channel');
const {
  codes, ConnectionClosed, errorFromWire, expectsAnswer, isResponse, MAX_DEPTH, MAX_INCOMING, mayWait,
  NESTED_TOO_DEEP_REPLY, nestedDeeper, parseUrl, PARSE_ERROR_REPLY, shallow, tooDeepAnswer, TransportError,
} = require('./protocol');

/** The errors (id null) after which the node closes the connection: Message too large,
 * Limit reached (max_connections). */
const CLOSING = new Set([codes.TOO_LARGE, codes.LIMIT_REACHED]);

/** How long close() waits for the node to end its side of the connection. */
const CLOSE_GRACE_MS = 1000;

class TcpChannel extends Channel {
  constructor(url, options = {}) {
    super(url, options);
    this.pending = new Map(); // id -> the waiter of the request (or batch) holding that id
    this.inOrder = new Set(); // the waiters the node answers in order (not ask, not a blocking get), oldest first
    this.buffer = '';
    this.socket = null;
    this.closed = false;
    this.reason = null; // why the connection closed (a ConnectionClosed), for what is pending and later calls
    this.farewell = null; // an error after which the node closes the connection (id null)
    this.failure = null; // the socket's error, if any
    this.answerer = null;
  }

  /** Resolves with this channel once connected; rejects with ConnectionClosed. */
  open() {
    const { host, port } = parseUrl(this.url);
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host, port });
      socket.setNoDelay(true);
      socket.setEncoding('utf8');
      const timer = setTimer(() => socket.destroy(new Error(`no connection within ${this.timeout} ms`)), this.timeout);
      const failed = (error) => {
        clearTimer(timer);
        this.closed = true;
        reject(new ConnectionClosed(`cannot reach ${this.url}: ${error.message}`));
      };
      socket.once('error', failed);
      socket.once('connect', () => {
        clearTimer(timer);
        socket.removeListener('error', failed);
        socket.on('error', (error) => { this.failure = this.failure || error; });
        socket.on('data', (chunk) => this.receive(chunk));
        socket.on('close', () => this.closedByPeer());
        this.socket = socket;
        resolve(this);
      });
    });
  }

  receive(chunk) {
    this.buffer += chunk;
    let newline;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline);
      this.buffer = this.buffer.slice(newline + 1);
      if (line.trim()) this.line(line);
    }
    if (this.buffer.length > MAX_INCOMING) {
      this.reason = new ConnectionClosed(`${this.url} sent a line over ${MAX_INCOMING} characters; connection closed`);
      this.buffer = '';
      this.socket.destroy();
    }
  }

  line(line) {
    if (nestedDeeper(line, MAX_DEPTH)) {
      this.tooDeep(line);
      return;
    }
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (error) {
      this.write(PARSE_ERROR_REPLY);
      return;
    }
    const members = Array.isArray(obj) ? obj : [obj];
    if (members.length && members.every(isResponse)) {
      this.response(obj); // a batch's replies come as one array, and settle the batch
    } else if (this.answerer === null) {
      this.write({ jsonrpc: '2.0', error: { code: codes.METHOD_NOT_FOUND, message: 'Method not found' }, id: obj.id ?? null });
    } else {
      this.answerer.answerBody(obj).then((answer) => { if (answer !== null) this.write(answer); });
    }
  }

  /** A line nested deeper than MAX_DEPTH, not read: an answer (its top levels say so)
   * fails the call it answers with a TransportError naming the limit; anything else is
   * answered as a node answers such a request, a Parse error naming the limit. */
  tooDeep(line) {
    let top = null;
    try {
      top = JSON.parse(shallow(line, 2)); // the members of a batch's replies are at level 2
    } catch (error) {
      // not JSON at all: answered as a request
    }
    const members = Array.isArray(top) ? top : [top];
    if (members.length && members.every(isResponse)) this.response(top, tooDeepAnswer(this.url));
    else this.write(NESTED_TOO_DEEP_REPLY);
  }

  /** A reply (or a batch reply, an array): settle the waiter it answers, by id, else (id
   * null) the oldest unanswered one the node answers in order; `failure`: reject it with
   * that instead (the reply could not be read). */
  response(reply, failure = null) {
    const members = Array.isArray(reply) ? reply : [reply];
    let waiter;
    for (const member of members) {
      if (member.id === null || member.id === undefined) continue;
      waiter = this.pending.get(member.id);
      if (waiter !== undefined) break;
    }
    if (waiter === undefined) {
      if (members.some((m) => m.id !== null && m.id !== undefined)) return; // not ours
      const error = members.find((m) => m.error && typeof m.error === 'object');
      // a result with id null answers a request with id null, which this client never
      // sends: not ours (the Python client drops it too); only an error is the node's
      // answer it could not tie to a request
      if (error === undefined) return;
      if (error && CLOSING.has(error.error.code)) this.farewell = errorFromWire(error.error);
      waiter = this.inOrder.values().next().value;
      if (waiter === undefined) return;
    }
    // what the node answers in order and was sent before this is answered already (or
    // never will be): its waiters, which timed out, are dropped
    if (this.inOrder.has(waiter)) {
      for (const older of this.inOrder) {
        this.inOrder.delete(older);
        if (older === waiter) break;
      }
    }
    if (failure !== null) waiter.reject(failure); else waiter.settle(reply);
  }

  write(obj) {
    this.writeText(JSON.stringify(obj));
  }

  writeText(text) {
    if (this.closed || this.socket === null) return;
    this.socket.write(text + '\n');
  }

  closedError() {
    return this.reason || new ConnectionClosed(`the connection to ${this.url} is closed`);
  }

  /** A waiter for the answer to `body`, the ids it holds (none: an invalid notification
   * the node answers all the same), resolved by `settle(reply)`, rejected by
   * `reject(error)`, timed out after `ms` (null: nobody waits for it). */
  waiter(body, ms, resolve = null, reject = null) {
    const ids = (Array.isArray(body) ? body : [body]).filter((r) => r && typeof r === 'object' && 'id' in r).map((r) => r.id);
    let timer = null;
    const waiter = {
      settle: (reply) => { waiter.finish(); if (resolve) resolve(reply); },
      reject: (error) => { waiter.finish(); if (reject) reject(error); },
      finish: () => {
        clearTimer(timer);
        for (const id of ids) if (this.pending.get(id) === waiter) this.pending.delete(id);
      },
    };
    for (const id of ids) this.pending.set(id, waiter);
    if (!mayWait(body)) this.inOrder.add(waiter);
    if (resolve !== null) {
      // a request that timed out keeps its place (its ids, its place in the order), so
      // that a late answer to it is known as such and settles nothing else; the
      // connection goes on (only this call failed)
      timer = setTimer(() => reject(new TransportError(`${this.url} did not answer within ${ms} ms`)), ms);
    }
    return waiter;
  }

  /** Send a request (or batch); resolves with its reply (or what the node answered a
   * batch: an array of replies, or one error object); a batch of notifications only
   * resolves with [] at once. */
  request(body, text, ms) {
    if (this.closed) return Promise.reject(this.closedError());
    const answered = Array.isArray(body) ? (body.length === 0 || body.some(expectsAnswer)) : expectsAnswer(body);
    if (!answered) {
      this.writeText(text);
      return Promise.resolve([]);
    }
    const reply = new Promise((resolve, reject) => this.waiter(body, ms, resolve, reject));
    this.writeText(text);
    return reply;
  }

  post(body, text) {
    if (this.closed) return Promise.reject(this.closedError());
    // a notification the node answers all the same (it is not a valid request): its place
    // in the order of answers is kept, so that the answer settles nothing else
    if (expectsAnswer(body)) this.waiter(body, null);
    this.writeText(text);
    return Promise.resolve();
  }

  /** Interconnect over TCP: the node's requests come on this connection; addr is null. */
  serve(answerer) {
    this.answerer = answerer;
    return Promise.resolve(null);
  }

  closedByPeer() {
    this.closed = true;
    if (this.reason === null && this.farewell !== null) {
      // (the node may reset the connection after it: its error says more than ECONNRESET)
      this.reason = new ConnectionClosed(`${this.url} closed the connection after answering ${this.farewell.message}`);
    } else if (this.reason === null && this.failure !== null) {
      this.reason = new ConnectionClosed(`the connection to ${this.url} failed: ${this.failure.message}`);
    }
    const error = this.closedError();
    const waiters = new Set([...this.pending.values(), ...this.inOrder]);
    this.pending.clear();
    this.inOrder.clear();
    for (const waiter of waiters) waiter.reject(error);
    if (this.onClose && !this.ending) this.onClose(error);
    if (this.ended) this.ended();
  }

  /** Close the connection (the node closes the sessions opened on it). */
  close() {
    this.ending = true;
    if (this.socket === null || this.socket.destroyed) {
      this.closed = true;
      return Promise.resolve();
    }
    const ended = new Promise((resolve) => { this.ended = resolve; });
    this.closed = true;
    this.socket.end();
    // a peer that never ends its side (one that answers nothing at all) is cut off
    const cut = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    return ended.finally(() => clearTimeout(cut));
  }
}

module.exports = { TcpChannel };
