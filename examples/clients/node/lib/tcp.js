'use strict';
/**
 * JSON-RPC over one TCP connection: one JSON text per line, both ways. Replies are
 * matched to requests by id; after interconnect the node sends its own requests on the
 * same connection, which the channel's Answerer answers.
 */

const net = require('net');
const { Channel } = require('./channel');
const {
  codes, ConnectionClosed, errorFromWire, isResponse, MAX_INCOMING, parseUrl, PARSE_ERROR_REPLY,
} = require('./protocol');

/** How long close() waits for the node to end its side of the connection. */
const CLOSE_GRACE_MS = 1000;

class TcpChannel extends Channel {
  constructor(url, options = {}) {
    super(url, options);
    this.pending = new Map(); // id -> {resolve, reject}
    this.buffer = '';
    this.socket = null;
    this.closed = false;
    this.reason = null; // why the connection closed, for what is pending and later calls
    this.answerer = null;
  }

  /** Resolves with this channel once connected; rejects with ConnectionClosed. */
  open() {
    const { host, port } = parseUrl(this.url);
    return new Promise((resolve, reject) => {
      const socket = net.createConnection({ host, port });
      socket.setNoDelay(true);
      socket.setEncoding('utf8');
      const timer = setTimeout(() => socket.destroy(new Error(`no connection within ${this.timeout} ms`)), this.timeout);
      const failed = (error) => {
        clearTimeout(timer);
        this.closed = true;
        reject(new ConnectionClosed(`cannot reach ${this.url}: ${error.message}`));
      };
      socket.once('error', failed);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeListener('error', failed);
        socket.on('error', (error) => { this.reason = this.reason || new ConnectionClosed(`the connection to ${this.url} failed: ${error.message}`); });
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
    let obj;
    try {
      obj = JSON.parse(line);
    } catch (error) {
      this.write(PARSE_ERROR_REPLY);
      return;
    }
    const members = Array.isArray(obj) ? obj : [obj];
    if (members.length && members.every(isResponse)) {
      for (const reply of members) this.response(reply);
    } else if (this.answerer === null) {
      this.write({ jsonrpc: '2.0', error: { code: codes.METHOD_NOT_FOUND, message: 'Method not found' }, id: obj.id ?? null });
    } else {
      this.answerer.answerBody(obj).then((answer) => { if (answer !== null) this.write(answer); });
    }
  }

  response(reply) {
    const waiter = this.pending.get(reply.id);
    if (waiter !== undefined) {
      this.pending.delete(reply.id);
      waiter.resolve(reply);
    } else if (reply.id === null && reply.error) {
      // e.g. Message too large: the node closes the connection after it
      this.reason = errorFromWire(reply.error);
    }
  }

  write(obj) {
    if (this.closed || this.socket === null) return;
    this.socket.write(JSON.stringify(obj) + '\n');
  }

  closedError() {
    return this.reason || new ConnectionClosed(`the connection to ${this.url} is closed`);
  }

  /** Send a request (or batch); resolves with its reply (or the array of replies). */
  request(body, ms) {
    if (this.closed) return Promise.reject(this.closedError());
    const ids = (Array.isArray(body) ? body : [body]).filter((r) => 'id' in r).map((r) => r.id);
    const waits = ids.map((id) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ConnectionClosed(`${this.url} did not answer within ${ms} ms`));
      }, ms);
      this.pending.set(id, {
        resolve: (reply) => { clearTimeout(timer); resolve(reply); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      });
    }));
    this.write(body);
    return Array.isArray(body) ? Promise.all(waits) : waits[0];
  }

  post(body) {
    if (this.closed) return Promise.reject(this.closedError());
    this.write(body);
    return Promise.resolve();
  }

  /** Interconnect over TCP: the node's requests come on this connection; addr is null. */
  serve(answerer) {
    this.answerer = answerer;
    return Promise.resolve(null);
  }

  closedByPeer() {
    this.closed = true;
    const error = this.closedError();
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
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
