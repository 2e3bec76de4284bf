'use strict';
/**
 * JSON-RPC over one TCP connection: one JSON text per line, both ways. Replies are
 * matched to requests by id; after interconnect the node sends its own requests on the
 * same connection, which the channel's Answerer answers. On a connection that serves no
 * methods (oneway, queue), what the node sends that is not a response is answered by a
 * node's rules all the same (answerer.js, Refuser): Invalid Request for what is not a
 * request, Method not found for a request; a response is never answered.
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
 *
 * Bounds: a line read is at most 4x `maxSize` bytes while answers are owed (`maxSize`
 * otherwise, a request of the node's), and must be UTF-8 JSON: a line that is not, while
 * calls wait, fails them at once and closes the connection. A call the node did not answer
 * in time is remembered (its ids, its place in the order) for the last LATE_ANSWERS of
 * them only, so that their late answers are dropped. What is written and not yet taken by
 * the node (the outbox: the socket's buffer beyond what the kernel holds) is at most
 * `outboxSize` lines and `outboxBytes` bytes: a request beyond them waits for room up to
 * its timeout, then rejects with QueueFull, not sent.
 */

const net = require('net');
const { Refuser } = require('./answerer');
const { Channel, clearTimer, setTimer } = require('./channel');
const {
  answerBasis, answerLimit, codes, ConnectionClosed, errorFromWire, expectsAnswer, isResponse, MAX_DEPTH, mayWait,
  NESTED_TOO_DEEP_REPLY, nestedDeeper, parseUrl, PARSE_ERROR_REPLY, QueueFull, shallow, tooDeepAnswer,
  TransportError,
} = require('./protocol');

/** What answers the node's requests on a connection that serves none (oneway, queue). */
const REFUSER = new Refuser();

/** The errors (id null) after which the node closes the connection: Message too large,
 * Limit reached (max_connections). */
const CLOSING = new Set([codes.TOO_LARGE, codes.LIMIT_REACHED]);

/** How long close() waits for the node to end its side of the connection (not at all
 * with `{ now: true }`: after a call the node did not answer in time). */
const CLOSE_GRACE_MS = 1000;

/** The most requests given up on (no answer in time) whose late answers are still
 * expected: such an answer is read and dropped (docs/protocol.md, "Limits"); an older one
 * is forgotten. */
const LATE_ANSWERS = 64;

/** Lines (requests: one message each for sendMessage and postMessage) and bytes written
 * and not yet taken by the node, at most (the options outboxSize and outboxBytes): a
 * Python client's outbox holds 2000 messages and 64 MiB (outbox_size, outbox_bytes). */
const OUTBOX_SIZE = 2000;
const OUTBOX_BYTES = 64 * 1024 * 1024;

/** The words of a line that is not UTF-8 JSON (a Buffer), for an error: what it begins with. */
function preview(bytes) {
  const text = bytes.subarray(0, 60).toString('latin1').replace(/[^\x20-\x7e]/g, '?');
  return `${JSON.stringify(text)}${bytes.length > 60 ? '...' : ''}`;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

class TcpChannel extends Channel {
  constructor(url, options = {}) {
    super(url, options);
    this.pending = new Map(); // id -> the waiter of the request (or batch) holding that id
    this.inOrder = new Set(); // the waiters the node answers in order (not ask, not a blocking get), oldest first
    this.late = new Set(); // the waiters given up on (timed out) whose answers may still come, oldest first
    this.parts = []; // the pieces (Buffers) of the line begun and not ended yet
    this.partBytes = 0;
    const { outboxSize = OUTBOX_SIZE, outboxBytes = OUTBOX_BYTES } = options;
    for (const [name, value] of [['outboxSize', outboxSize], ['outboxBytes', outboxBytes]]) {
      if (!(Number.isInteger(value) && value >= 1)) throw new TypeError(`'${name}' must be an integer >= 1, got ${value}`);
    }
    this.outboxSize = outboxSize;
    this.outboxBytes = outboxBytes;
    this.outboxLines = 0; // lines handed to the socket and not yet written to the kernel
    this.outboxBytesNow = 0; // their bytes
    this.roomWaiters = []; // requests waiting for room in the outbox, oldest first
    this.socket = null;
    this.closed = false;
    this.reason = null; // why the connection closed (a ConnectionClosed), for what is pending and later calls
    this.farewell = null; // an error after which the node closes the connection (id null)
    this.failure = null; // the socket's error, if any
    this.over = false; // closedByPeer ran
    this.answerer = null;
    this.refused = Promise.resolve(); // the last answer of the Refuser, written in order
  }

  /** Resolves with this channel once connected; rejects with ConnectionClosed. */
  open() {
    const { host, port } = parseUrl(this.url);
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host, port });
      socket.setNoDelay(true);
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

  /** Whether answers are owed to this end: calls waiting, or given up on and still
   * remembered (their late answers are read, then dropped). */
  expecting() {
    return this.pending.size > 0 || this.inOrder.size > 0;
  }

  /** The longest line read now: an answer's (4x maxSize) while answers are owed, else a
   * request's (maxSize), as a node reads its lines. */
  lineLimit() {
    return this.expecting() ? answerLimit(this.maxSize) : this.maxSize;
  }

  receive(chunk) {
    let from = 0;
    let newline;
    while ((newline = chunk.indexOf(10, from)) >= 0) {
      const piece = chunk.subarray(from, newline);
      from = newline + 1;
      const bytes = this.parts.length ? Buffer.concat([...this.parts, piece]) : piece;
      this.parts = [];
      this.partBytes = 0;
      if (bytes.length > this.lineLimit()) {
        this.tooLong(bytes.length);
        return;
      }
      this.line(bytes);
      if (this.closed) return;
    }
    if (from < chunk.length) {
      this.parts.push(chunk.subarray(from));
      this.partBytes += chunk.length - from;
      if (this.partBytes > this.lineLimit()) this.tooLong(this.partBytes);
    }
  }

  /** A line over lineLimit(): the connection is closed. An answer: the calls waiting fail
   * naming the limit (nothing to tell the node); a request of the node's: answered as a
   * node answers one, Message too large (id null), first. */
  tooLong(size) {
    const limit = this.lineLimit();
    const answer = this.expecting();
    if (!answer) {
      this.write({ jsonrpc: '2.0', error: { code: codes.TOO_LARGE, message: 'Message too large',
        data: { limit, setting: 'max_size' } }, id: null });
    }
    const what = answer ? `an answer: 4 x max(maxSize, 1 MiB) = 4 x ${answerBasis(this.maxSize)}` : 'a request: maxSize';
    this.fail(new ConnectionClosed(`${this.url} sent a line over the limit of ${limit} bytes (${what}; ${size} bytes ` +
      'read of it); connection closed'), answer);
  }

  /** Close the connection at once for `reason` (a ConnectionClosed): the calls waiting,
   * and every later one, fail with it. `now`: reset it, without writing what is left. */
  fail(reason, now = true) {
    if (this.reason === null) this.reason = reason;
    this.parts = [];
    this.partBytes = 0;
    const socket = this.socket;
    if (now) {
      socket.destroy();
    } else {
      socket.end(); // what was written goes first; a peer that never ends its side is cut off
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    }
    this.closedByPeer();
  }

  line(bytes) {
    let line;
    try {
      line = utf8.decode(bytes);
    } catch (error) {
      this.unreadable(bytes, 'is not UTF-8');
      return;
    }
    if (!line.trim()) return;
    if (nestedDeeper(line, MAX_DEPTH)) {
      this.tooDeep(line);
      return;
    }
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (error) {
      this.unreadable(bytes, 'is not JSON');
      return;
    }
    const members = Array.isArray(obj) ? obj : [obj];
    if (members.length && members.every(isResponse)) {
      this.response(obj); // a batch's replies come as one array, and settle the batch
    } else if (this.answerer === null) {
      // a request (or what is not one) on a connection that serves none: answered by a
      // node's rules (Refuser), in the order it came, as a node answers (nothing waits)
      this.refused = this.refused.then(() => REFUSER.answerBody(obj)).then((answer) => {
        if (answer !== null) this.write(answer);
      });
    } else {
      this.answerer.answerBody(obj).then((answer) => { if (answer !== null) this.write(answer); });
    }
  }

  /** A line that is not UTF-8 JSON (`why`). While answers are owed, it cannot be told
   * from the answer it stands for: the calls waiting fail at once, naming it, and the
   * connection is closed (the node is not berryMQ's, or is broken: an HTTP server, say,
   * which answers a line of JSON with an HTTP status line). Else it is a request of the
   * node's that cannot be read, answered as a node answers one, Parse error. */
  unreadable(bytes, why) {
    const text = bytes.toString('latin1');
    if (/^HTTP\/\d/.test(text)) {
      this.fail(new ConnectionClosed(`${this.url} does not speak berryMQ's TCP protocol (JSON-RPC, one JSON text per ` +
        `line): an HTTP server answered (${preview(bytes)}); for an HTTP port, use http://`));
      return;
    }
    if (!this.expecting()) {
      this.write(PARSE_ERROR_REPLY);
      return;
    }
    this.fail(new ConnectionClosed(`${this.url} answered a line that ${why} (${preview(bytes)}): not a JSON-RPC ` +
      'answer; connection closed'));
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
    // never will be): its waiters, which timed out, are dropped (those still waiting
    // keep their ids: the node may answer them by id yet)
    if (this.inOrder.has(waiter)) {
      for (const older of this.inOrder) {
        this.inOrder.delete(older);
        if (older === waiter) break;
        if (this.late.has(older)) older.finish();
      }
    }
    if (failure !== null) waiter.reject(failure); else waiter.settle(reply);
  }

  write(obj) {
    this.writeText(JSON.stringify(obj));
  }

  /** Write one line; it counts in the outbox until the socket handed it to the kernel. */
  writeText(text, bytes = Buffer.byteLength(text) + 1) {
    if (this.closed || this.socket === null) return;
    this.outboxLines += 1;
    this.outboxBytesNow += bytes;
    this.socket.write(`${text}\n`, () => {
      this.outboxLines -= 1;
      this.outboxBytesNow -= bytes;
      if (this.roomWaiters.length) this.admit();
    });
  }

  /** Whether a line of `bytes` has room in the outbox (a line alone in it, whatever its size). */
  hasRoom(bytes) {
    return this.outboxLines < this.outboxSize &&
      (this.outboxLines === 0 || this.outboxBytesNow + bytes <= this.outboxBytes);
  }

  /** Run `write()` once the outbox has room for `text` and no earlier request waits for
   * it (so requests go out in the order they were made); resolves as its result does.
   * When there is no room within `ms`, it is not run: rejects with QueueFull naming the
   * limit. */
  whenRoom(text, ms, write) {
    const bytes = Buffer.byteLength(text) + 1;
    if (this.roomWaiters.length === 0 && this.hasRoom(bytes)) return Promise.resolve(write(ms, bytes));
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const entry = { bytes, timer: null, reject };
      entry.go = () => {
        clearTimer(entry.timer);
        if (this.closed) reject(this.closedError());
        else resolve(write(ms === null ? null : Math.max(0, ms - (Date.now() - started)), bytes));
      };
      entry.timer = setTimer(() => {
        this.roomWaiters.splice(this.roomWaiters.indexOf(entry), 1);
        const [setting, limit] = this.outboxLines >= this.outboxSize ? ['outboxSize', this.outboxSize] :
          ['outboxBytes', this.outboxBytes];
        reject(new QueueFull(`the outbox of the connection to ${this.url} stayed full for ${ms} ms: ` +
          `${this.outboxLines} requests (${this.outboxBytesNow} bytes) written and not yet taken by the node, ` +
          `the limit is ${limit}${setting === 'outboxBytes' ? ' bytes' : ''} (${setting}); it was not sent`,
        { setting, limit }));
        this.admit(); // the next may fit where this did not
      }, ms === null ? this.timeout : ms);
      this.roomWaiters.push(entry);
    });
  }

  /** Let the requests waiting for room go, in order, while there is room. */
  admit() {
    while (this.roomWaiters.length && (this.closed || this.hasRoom(this.roomWaiters[0].bytes))) {
      this.roomWaiters.shift().go();
    }
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
        this.inOrder.delete(waiter);
        this.late.delete(waiter);
      },
    };
    for (const id of ids) this.pending.set(id, waiter);
    if (!mayWait(body)) this.inOrder.add(waiter);
    if (resolve !== null) {
      // a request that timed out keeps its place (its ids, its place in the order), so
      // that a late answer to it is known as such and settles nothing else, while it is
      // one of the last LATE_ANSWERS given up on; the connection goes on (only this call
      // failed)
      timer = setTimer(() => {
        const error = new TransportError(`${this.url} did not answer within ${ms} ms`);
        resolve = null;
        this.late.add(waiter);
        if (this.late.size > LATE_ANSWERS) this.late.values().next().value.finish(); // the oldest is forgotten
        reject(error);
        reject = null;
      }, ms);
    }
    return waiter;
  }

  /** Send a request (or batch); resolves with its reply (or what the node answered a
   * batch: an array of replies, or one error object); a batch of notifications only
   * resolves with [] at once. */
  request(body, text, ms) {
    if (this.closed) return Promise.reject(this.closedError());
    const answered = Array.isArray(body) ? (body.length === 0 || body.some(expectsAnswer)) : expectsAnswer(body);
    return this.whenRoom(text, ms, (left, bytes) => {
      if (!answered) {
        this.writeText(text, bytes);
        return [];
      }
      const reply = new Promise((resolve, reject) => this.waiter(body, left, resolve, reject));
      this.writeText(text, bytes);
      return reply;
    });
  }

  /** Send a notification: resolves once it is written, or in the outbox within its
   * bounds (it waits for room up to the channel's timeout, then rejects with QueueFull). */
  post(body, text) {
    if (this.closed) return Promise.reject(this.closedError());
    return this.whenRoom(text, this.timeout, (left, bytes) => {
      // a notification the node answers all the same (it is not a valid request): its place
      // in the order of answers is kept, so that the answer settles nothing else
      if (expectsAnswer(body)) this.waiter(body, null);
      this.writeText(text, bytes);
    });
  }

  /** Interconnect over TCP: the node's requests come on this connection; addr is null. */
  serve(answerer) {
    this.answerer = answerer;
    return Promise.resolve(null);
  }

  /** The connection ended (the socket closed, or fail() closed it): what waits fails. */
  closedByPeer() {
    if (this.over) return; // (fail() ran this before the socket's close event)
    this.over = true;
    this.closed = true;
    if (this.reason === null && this.farewell !== null) {
      // (the node may reset the connection after it: its error says more than ECONNRESET)
      this.reason = new ConnectionClosed(`${this.url} closed the connection after answering ${this.farewell.message}`);
    } else if (this.reason === null && this.failure !== null) {
      this.reason = new ConnectionClosed(`the connection to ${this.url} failed: ${this.failure.message}`);
    } else if (this.reason === null && !this.ending) {
      // the node ended it (stopped, killed): not the words of a connection we closed
      this.reason = new ConnectionClosed(`${this.url} closed the connection`);
    }
    const error = this.closedError();
    const waiters = new Set([...this.pending.values(), ...this.inOrder]);
    this.pending.clear();
    this.inOrder.clear();
    this.late.clear();
    for (const waiter of waiters) waiter.reject(error);
    this.admit(); // what waits for room in the outbox fails too
    if (this.onClose && !this.ending) this.onClose(error);
    if (this.ended) this.ended();
  }

  /** Close the connection (the node closes the sessions opened on it): what was written
   * goes first, and the node gets CLOSE_GRACE_MS to end its side. With `now` (the node
   * did not answer a call in time: waiting for it again would make that call reject
   * later than the timeout it names) the connection is cut at once. */
  close({ now = false } = {}) {
    this.ending = true;
    if (this.socket === null || this.socket.destroyed || this.over) {
      this.closed = true;
      return Promise.resolve();
    }
    const ended = new Promise((resolve) => { this.ended = resolve; });
    this.closed = true;
    this.admit(); // what waits for room in the outbox fails: the connection is closed
    if (now) {
      this.socket.destroy();
      return ended;
    }
    this.socket.end();
    // a peer that never ends its side (one that answers nothing at all) is cut off
    const cut = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    return ended.finally(() => clearTimeout(cut));
  }
}

module.exports = { TcpChannel };
