'use strict';
/**
 * berryMQ for Node.js: talk to a berryMQ node in the three styles of the Python API,
 * over TCP (tcp://host:port, one JSON text per line) or HTTP (http://host:port, POST /),
 * with nothing but Node's built-in modules. Written from docs/protocol.md.
 *
 *   const berrymq = require('berrymq');
 *
 *   // style 02, one way: this process only sends
 *   const oneway = await berrymq.connectOneway('tcp://127.0.0.1:7000');
 *   await oneway.sendMessage('job:done', ['report.txt'], { user: 'bob' });
 *
 *   // style 03, via a queue: the node keeps the messages of a pattern for us
 *   const queue = await berrymq.connectViaQueue('http://127.0.0.1:8000', 'job:*');
 *   const message = await queue.get({ timeout: 5 }); // { id, args, kwargs, extras }
 *
 *   // style 01, interconnect: both directions
 *   const link = await berrymq.interconnect('tcp://127.0.0.1:7000', (m) => console.log(m.id),
 *                                           { onAsk: (m) => `seen ${m.id}` });
 *   await link.sendMessage('chat:hello', ['from node.js']);
 *
 *   console.log(await link.ask('price:quote', [2])); // the node's receivers' replies
 *   await berrymq.closeConnection(); // every connection (or pass one, or a URL)
 *
 * As in Python, the module-level sendMessage, get, getNowait and ask use the most recent
 * connection (get and getNowait: the most recent queue connection).
 */

const crypto = require('crypto');
const protocol = require('./lib/protocol');
const { Answerer } = require('./lib/answerer');
const uids = require('./lib/uids');
const { TcpChannel } = require('./lib/tcp');
const { HttpChannel } = require('./lib/http');
const { clearTimer, setTimer } = require('./lib/channel');

const {
  BerryMQError, Empty, MessageTooLarge, QueueFull, TransportError, ConnectionClosed, ReplyError, parseUrl,
  messageFromWire, MAX_SIZE,
} = protocol;

/** Seconds a session may stay unused before the node closes it. */
const DEFAULT_TTL = 1000;
/** The longest wait the node grants one `get` request (longer waits ask again). */
const MAX_GET_WAIT = 30;

/** A raw channel to the node at `url`: `call(method, params)`, `notify`, `batch`,
 * `close()`; for clients that want the protocol method by method. */
function connect(url, options = {}) {
  const { scheme } = parseUrl(url);
  const channel = scheme === 'tcp' ? new TcpChannel(url, options) : new HttpChannel(url, options);
  return channel.open();
}

/** Every connection opened through this module and not closed, the most recent last. */
const connections = [];

function forget(connection) {
  const index = connections.indexOf(connection);
  if (index >= 0) connections.splice(index, 1);
}

/** A TypeError for a `timeout` (seconds) that is not null or a finite number >= 0: a
 * wait of Infinity is null ("as long as it takes"), and JSON has no Infinity. */
function checkTimeout(timeout, call) {
  if (timeout !== null && !(typeof timeout === 'number' && Number.isFinite(timeout) && timeout >= 0)) {
    throw new TypeError(`${call}: 'timeout' must be a finite number of seconds >= 0, or null, ` +
                        `not ${typeof timeout === 'number' ? timeout : JSON.stringify(timeout) ?? String(timeout)}`);
  }
}

function checkMessage(identifier, args, kwargs) {
  if (typeof identifier !== 'string') throw new TypeError(`an identifier is a string, got ${typeof identifier}`);
  if (!Array.isArray(args)) throw new TypeError('args must be an array');
  if (kwargs === null || typeof kwargs !== 'object' || Array.isArray(kwargs)) {
    throw new TypeError('kwargs must be an object');
  }
  return protocol.checkDepth(identifier, args, kwargs);
}

/** A URL as one node's address, whatever way it is written (a trailing "/", the case of
 * the host): `scheme://host:port`. */
function normalUrl(url) {
  const { scheme, host, port } = parseUrl(url);
  return `${scheme}://${host.includes(':') ? `[${host.toLowerCase()}]` : host.toLowerCase()}:${port}`;
}

/** One session on a node, in one style ('interconnect', 'oneway' or 'queue'). */
class Connection {
  constructor(channel, style, token) {
    this.channel = channel;
    this.style = style;
    this.token = token;
    this.url = channel.url;
    this.closed = false;
    this.reason = null; // the error that closed it, when the node or the network did
    let ended;
    /** Resolves when the connection closes: with null when we closed it, with the error
     * when the node or the network did (noticed at once over TCP; over HTTP at the next
     * request, which rejects with it). */
    this.ended = new Promise((resolve) => { ended = resolve; });
    this.renewal = null; // the timer of the next renewal of an interconnection's session
    /** The session's ttl in seconds: the one given, or without one DEFAULT_TTL, or the
     * node's max_ttl when that is less (set by the function that opened it). */
    this.ttl = null;
    this.end = (reason) => {
      this.closed = true;
      this.reason = reason;
      clearTimer(this.renewal); // renewals stop with the connection, whoever ended it
      this.renewal = null;
      forget(this);
      ended(reason);
    };
    channel.onClose = this.end;
  }

  /** Call a method of the session (a lost connection ends the Connection; a call the node
   * did not answer in time rejects with a TransportError, and the Connection goes on). */
  async call(method, params, options) {
    if (this.closed) throw this.reason || new ConnectionClosed(`the connection to ${this.url} is closed`);
    try {
      return await this.channel.call(method, params, options);
    } catch (error) {
      const forgotten = error instanceof BerryMQError && error.code === protocol.codes.UNKNOWN_TOKEN;
      if (this.closed) {
        // closed meanwhile (by close(), say, while a get waited): what the node or the
        // channel said of it (an unknown token, a dropped request) is that
        if (forgotten || error instanceof TransportError) throw this.reason || this.closedError();
        throw error;
      }
      if (error instanceof ConnectionClosed || forgotten) {
        // a session the node no longer knows (it expired, or the node restarted) is gone:
        // the Connection ends with it, as when the node closes the connection
        const reason = error instanceof ConnectionClosed ? error : new ConnectionClosed(
          `the node no longer knows this connection to ${this.url}: ${error.message.replace(/ \(-32001\).*$/, '')}`,
          error.code, error.data);
        this.end(reason);
        this.channel.close();
        throw reason;
      }
      throw error;
    }
  }

  closedError() {
    return new ConnectionClosed(`the connection to ${this.url} is closed`);
  }

  /** Renew the session every `ttl`/3 seconds, until the connection ends: a request naming
   * its token (an empty send_messages, which delivers nothing), since a node closes a
   * session it hears nothing of for `ttl` seconds (what it forwards to us does not count),
   * and a quiet interconnection would end without a word (over HTTP nothing else notices).
   * A failed renewal is handed to `report(error)`: one that finds the session or the node
   * gone has ended the connection too (`ended` resolves with the error); one the node did
   * not answer in time is tried again at the next turn. */
  renewEvery(ttl, report) {
    const turn = () => {
      this.call('send_messages', { token: this.token, messages: [] }).catch((error) => {
        if (this.closed && this.reason === null) return; // closed by us meanwhile
        report(error);
      });
      if (!this.closed) this.renewal = setTimer(turn, (ttl * 1000) / 3);
    };
    this.renewal = setTimer(turn, (ttl * 1000) / 3);
  }

  /** Whether the session is being renewed (an open interconnection). */
  get renewing() {
    return this.renewal !== null;
  }

  async notify(method, params) {
    if (this.closed) throw this.reason || new ConnectionClosed(`the connection to ${this.url} is closed`);
    return this.channel.notify(method, params);
  }

  /** Send one message; resolves with "ok" once the node accepted it (read and checked
   * it; its receivers run in the order this connection sent its messages, possibly just
   * after the answer: docs/delivery.md). */
  /** checkMessage, and MessageTooLarge for a message over what the node can forward
   * (protocol.checkSize, against this connection's maxSize). */
  checkMessage(identifier, args, kwargs) {
    protocol.checkSize(identifier, checkMessage(identifier, args, kwargs), this.channel.maxSize);
  }

  async sendMessage(identifier, args = [], kwargs = {}) {
    this.checkMessage(identifier, args, kwargs);
    return this.acknowledged('send_message',
      await this.call('send_message', { token: this.token, identifier, args, kwargs, ...this.uid() }));
  }

  /** `result`, what the node answered `method` (send_message, send_messages), when it is
   * "ok"; anything else is not the node's answer to it: a TransportError quoting it. */
  acknowledged(method, result) {
    if (result !== 'ok') throw new TransportError(`${this.url} answered ${method} with ${protocol.preview(result)}, not "ok"`);
    return result;
  }

  /** `{ uid }` for what an interconnection sends (a message, an ask), so that it is not
   * delivered back to this process round a cycle of nodes (uids.js); `{}` for the other
   * styles, whose connections nothing is forwarded back on. */
  uid() {
    return this.style === 'interconnect' ? { uid: uids.newUid() } : {};
  }

  /** Fire and forget: send_message as a notification (the node answers nothing, not
   * even an error). Faster; use sendMessage to know the message arrived. */
  async postMessage(identifier, args = [], kwargs = {}) {
    this.checkMessage(identifier, args, kwargs);
    return this.notify('send_message', { token: this.token, identifier, args, kwargs, ...this.uid() });
  }

  /** Many messages in one request, delivered in order: each [identifier, args, kwargs]. */
  async sendMessages(messages) {
    for (const m of messages) this.checkMessage(...m);
    const interconnected = this.style === 'interconnect';
    return this.acknowledged('send_messages', await this.call('send_messages', { token: this.token,
      messages: interconnected ? messages.map(([i, a = [], k = {}]) => [i, a, k, this.uid()]) : messages }));
  }

  /** The next message of the node's queue for us (style 03). Waits up to `timeout`
   * seconds (null: as long as it takes); rejects with berrymq.Empty when none came. */
  async get({ block = true, timeout = null } = {}) {
    if (!block) return this.getNowait();
    checkTimeout(timeout, 'get');
    const deadline = timeout === null ? null : Date.now() + timeout * 1000;
    // one of the connection's calls that wait (see Channel.whenWaitingAllowed): queued
    // here while maxWaiting others are outstanding, Empty if its timeout ran out so
    return this.channel.whenWaitingAllowed(deadline, async () => {
      if (this.closed) throw this.reason || new ConnectionClosed(`the connection to ${this.url} is closed`);
      for (;;) {
        const left = deadline === null ? MAX_GET_WAIT : Math.max(0, deadline - Date.now()) / 1000;
        const wait = Math.min(left, MAX_GET_WAIT);
        try {
          const entry = await this.call('get', { token: this.token, block: true, timeout: wait }, { wait, turn: true });
          return this.received('get', entry);
        } catch (error) {
          if (!(error instanceof Empty) || (deadline !== null && Date.now() >= deadline)) throw error;
        }
      }
    }, () => { throw new Empty(); });
  }

  /** The next message of the node's queue for us; rejects with berrymq.Empty at once
   * when there is none. */
  async getNowait() {
    return this.received('get_nowait', await this.call('get_nowait', { token: this.token }));
  }

  /** The message `entry` the node answered `method` (get, get_nowait) with; what is not
   * [identifier, args, kwargs] is not a message: a TransportError quoting it. */
  received(method, entry) {
    try {
      return messageFromWire(entry);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error;
      throw new TransportError(`${this.url} answered ${method} with ${protocol.preview(entry)}, not a message ` +
                               '([identifier, args (array), kwargs (object)])');
    }
  }

  /** `for await (const message of queue)`: every message of the queue, until the
   * connection is closed (by us: the loop ends; by the node or the network: it throws). */
  async* [Symbol.asyncIterator]() {
    while (!this.closed) {
      let message;
      try {
        message = await this.get();
      } catch (error) {
        if (this.closed && this.reason === null) return;
        throw error;
      }
      yield message;
    }
  }

  /** Ask the node's receivers of `identifier`; resolves with their replies in order:
   * each the value a receiver returned, or a ReplyError for one that failed. */
  async ask(identifier, args = [], kwargs = {}, { timeout = 5 } = {}) {
    checkTimeout(timeout, 'ask');
    checkMessage(identifier, args, kwargs);
    const deadline = timeout === null ? null : Date.now() + timeout * 1000;
    const limit = this.channel.maxWaiting;
    const uid = this.uid();
    const replies = await this.channel.whenWaitingAllowed(deadline, (queued) => {
      // one that waited for its turn asks the node for what is left of its timeout
      const left = queued && deadline !== null ? Math.max(0, deadline - Date.now()) / 1000 : timeout;
      // null: the node waits for its receivers as long as they take, and so do we (the
      // connection's `timeout` is for an answer beyond the wait; null + it is no limit)
      return this.call('ask', { identifier, args, kwargs, timeout: left, token: this.token, ...uid },
        { wait: left === null ? Infinity : left, turn: true });
    }, () => {
      throw new BerryMQError('Limit reached', protocol.codes.LIMIT_REACHED, { setting: 'max_waiting', limit,
        detail: `the ask's timeout of ${timeout} s ran out while ${limit} calls that wait were outstanding ` +
          `on this connection (the node runs at most ${limit} at once, its max_waiting); it was not sent` });
    });
    if (!Array.isArray(replies)) {
      throw new TransportError(`${this.url} answered ask with ${protocol.preview(replies)}, not an array of replies`);
    }
    return replies.map((r) => {
      // each { value } or { error: { type, message, receiver, node } } (docs/protocol.md, "ask")
      const entry = r !== null && typeof r === 'object' && !Array.isArray(r);
      if (entry && 'error' in r && r.error !== null && typeof r.error === 'object' && !Array.isArray(r.error)) {
        return new ReplyError(r.error);
      }
      if (entry && 'value' in r) return r.value;
      throw new TransportError(`${this.url} answered ask with a malformed reply ${protocol.preview(r)}, ` +
                               'not { value } or { error }');
    });
  }

  /** Close the session on the node, then the connection (idempotent). A session the node
   * no longer knows (it expired, or the node restarted: -32001) is gone either way, and so
   * is one whose node is gone (unreachable, or it closed the connection: ConnectionClosed),
   * so those resolve too, over both transports (over TCP the connection ended with the
   * node, over HTTP the close_connection request finds it gone). A node that does not
   * read what is sent to it (the outbox stayed full) is one that does not answer in time:
   * TransportError, as the README says. */
  async close() {
    if (this.closed) return;
    this.end(null);
    let unanswered = false; // the node did not answer in time: it is not waited for again
    try {
      await this.channel.call('close_connection', { token: this.token });
    } catch (error) {
      unanswered = unansweredIn(error);
      if (error instanceof QueueFull && error.data && /^outbox/.test(error.data.setting)) {
        throw new TransportError(`${this.url} did not take close_connection in time: ${error.message}`,
          null, error.data);
      }
      if (error.code !== protocol.codes.UNKNOWN_TOKEN && !(error instanceof ConnectionClosed)) throw error;
    } finally {
      // (so that a close the node did not answer rejects at the timeout it names)
      await this.channel.close({ now: unanswered });
    }
  }
}

/** Whether `error` says the node did not answer in time (a call's timeout, or an outbox
 * it took nothing from): a channel closed after it is cut at once, not given the node's
 * grace again, so that the call rejects at the timeout its error names. */
function unansweredIn(error) {
  return (error instanceof TransportError && !(error instanceof ConnectionClosed) && error.code === null) ||
    (error instanceof QueueFull && Boolean(error.data) && /^outbox/.test(error.data.setting));
}

/** The node's max_ttl when `error` is its refusal of a session `ttl` over it (Limit
 * reached, `data.setting` "max_ttl", the limit in `data.limit`) and a usable ttl below
 * `asked`; else null. */
function ttlLimit(error, asked) {
  if (!(error instanceof BerryMQError) || error.code !== protocol.codes.LIMIT_REACHED) return null;
  const data = error.data;
  if (data === null || typeof data !== 'object' || data.setting !== 'max_ttl') return null;
  const limit = data.limit;
  return typeof limit === 'number' && Number.isFinite(limit) && limit > 0 && limit < asked ? limit : null;
}

/** `channel.call(method, params)` for a session. One asked for without a ttl (`ttlGiven`
 * false: DEFAULT_TTL) that the node refuses as over its max_ttl is asked for again with
 * that limit (params.ttl becomes it), as a client that leaves ttl out gets it
 * (docs/settings.md, max_ttl), and as the Python client does. */
async function openSession(channel, method, params, ttlGiven) {
  try {
    return await channel.call(method, params);
  } catch (error) {
    const limit = ttlGiven ? null : ttlLimit(error, params.ttl);
    if (limit === null) throw error;
    params.ttl = limit;
    return channel.call(method, params);
  }
}

/** Open a channel, a session on it, and the Connection that holds both. */
async function open(url, style, method, params, options, serve = null, ttlGiven = true) {
  const channel = await connect(url, options);
  try {
    if (serve !== null) params.addr = await channel.serve(serve, options.listen);
    const token = await openSession(channel, method, params, ttlGiven);
    const problem = protocol.tokenProblem(token);
    if (problem !== null) {
      // not a session we can use: every later request would carry it (docs/protocol.md,
      // "Sessions and tokens")
      throw new TransportError(`${url} answered ${method} with ${protocol.preview(token)}, not a token (${problem})`);
    }
    const connection = new Connection(channel, style, token);
    connection.ttl = params.ttl;
    connections.push(connection);
    return connection;
  } catch (error) {
    await channel.close({ now: unansweredIn(error) });
    throw error;
  }
}

/** Style 02: a connection that sends to the node at `url` (sendMessage); its receivers
 * get the messages. Options: ttl (seconds; without it DEFAULT_TTL, or the node's max_ttl
 * when that is less: `connection.ttl` says which), secret, timeout (ms per request),
 * maxSize (bytes: the largest request sent; 4x it is what is read of one answer),
 * maxWaiting, and over TCP outboxSize and outboxBytes (what may wait to be written). */
function connectOneway(url, { ttl, ...options } = {}) {
  return open(url, 'oneway', 'connect_oneway', { ttl: ttl ?? DEFAULT_TTL }, options, null, ttl != null);
}

/** Style 03: the node at `url` keeps a queue of `pattern` for us, pulled with get and
 * getNowait; the connection can send too. The node is told our maxSize (`max_size`), so
 * that its queue holds no message larger than we read. */
function connectViaQueue(url, pattern, { ttl, ...options } = {}) {
  return open(url, 'queue', 'connect_via_queue', { identifier: pattern, ttl: ttl ?? DEFAULT_TTL,
    max_size: maxSizeOf(options) }, options, null, ttl != null);
}

/** The maxSize option, as a channel of `options` takes it (the node checks it too). */
function maxSizeOf(options) {
  return options.maxSize === undefined ? MAX_SIZE : options.maxSize;
}

/** Style 01: the node at `url` forwards every non-local message it sees to
 * onMessage(message), and the connection sends ours. Over TCP both directions use the
 * one connection; over HTTP the node calls back an HTTP server started here (on
 * `listen`, default { host: '127.0.0.1', port: 0 }). `onAsk(message)` answers the
 * node's asks (return a value, or undefined for "no receiver here"); `onError(error,
 * message)` hears what onMessage threw, or what its promise rejected with, and (with
 * `message` null) a renewal of the session that failed (default: print it on stderr).
 * The session is renewed every ttl/3 seconds until the connection ends
 * (Connection.renewEvery), so a quiet interconnection stays open. */
function interconnect(url, onMessage, { ttl, onAsk = null, onError = null, ...options } = {}) {
  if (typeof onMessage !== 'function') throw new TypeError('interconnect needs onMessage(message), a function');
  const report = onError || ((error, message) => {
    if (message === null) console.error(`berrymq: renewing the session of ${url} failed: ${error && error.message}`);
    else console.error(`berrymq: onMessage failed for ${message.id}: ${error && error.stack}`);
  });
  const token = crypto.randomBytes(32).toString('base64url');
  const answerer = new Answerer(token, onMessage, onAsk, report);
  // max_size: the node forwards no message larger than we read
  return open(url, 'interconnect', 'interconnect', { addr: null, token, ttl: ttl ?? DEFAULT_TTL,
    max_size: maxSizeOf(options) }, options, answerer, ttl != null).then((connection) => {
    connection.renewEvery(connection.ttl, (error) => {
      try {
        report(error, null);
      } catch (failed) {
        console.error(`berrymq: onError failed for a renewal of ${url}: ${failed && failed.stack}`);
      }
    });
    return connection;
  });
}

function latest(needQueue = false) {
  for (let i = connections.length - 1; i >= 0; i -= 1) {
    if (!needQueue || connections[i].style === 'queue') return connections[i];
  }
  throw new ConnectionClosed(needQueue ?
    'no queue connection is open; call connectViaQueue(url, pattern)' :
    'no connection is open; call connectOneway(url) first');
}

/** Send on the most recent connection (any style). */
async function sendMessage(identifier, args = [], kwargs = {}) {
  return latest().sendMessage(identifier, args, kwargs);
}

/** Pull from the most recent queue connection (see Connection.get). */
async function get(options = {}) { return latest(true).get(options); }

/** Pull without waiting from the most recent queue connection. */
async function getNowait() { return latest(true).getNowait(); }

/** Ask the receivers of the node of the most recent connection. */
async function ask(identifier, args = [], kwargs = {}, options = {}) {
  return latest().ask(identifier, args, kwargs, options);
}

/** Close one connection, the connections to a URL, or every connection (no argument). */
async function closeConnection(target = null) {
  const url = target === null || target instanceof Connection ? null : normalUrl(target);
  const chosen = target instanceof Connection ? [target] :
    connections.filter((c) => url === null || normalUrl(c.url) === url);
  const results = await Promise.allSettled(chosen.map((c) => c.close()));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
}

module.exports = {
  connectOneway, connectViaQueue, interconnect, sendMessage, get, getNowait, ask,
  closeConnection, connect, Connection, connections, DEFAULT_TTL, MAX_SIZE, codes: protocol.codes,
  BerryMQError, Empty, MessageTooLarge, QueueFull, TransportError, ConnectionClosed, ReplyError,
};
