'use strict';
/**
 * A Channel is one connection to a node that speaks the protocol method by method:
 * `call` (a request, resolving with its result), `notify` (no answer), `batch`. The
 * channel writes each request's JSON text here (refusing what JSON cannot carry, NaN or a
 * function say, and a text over `maxSize`, before anything is sent); the transports (tcp.js, http.js) add the framing:
 * `request(body, text, ms, waits)` (`waits`: the node may hold the answer on purpose),
 * `post(body, text)`,
 * `serve(answerer)` (how the node reaches us after interconnect) and `close()`.
 */

const { BerryMQError, codes, encodeRequest, ENVELOPE, MAX_SIZE, mayWait, resultOf } = require('./protocol');

/** Milliseconds a request may wait for its answer, beyond any wait it asks the node for. */
const DEFAULT_TIMEOUT = 10000;

/** Requests that may wait (an `ask`, a blocking `get`, a batch with one) a channel keeps
 * outstanding at once: the node's default `max_waiting` (16), what it runs at once on one
 * TCP connection (one more it refuses with Limit reached). More are queued here, in the
 * order they were made, and sent as earlier ones are answered; over HTTP the same, each
 * outstanding one on a connection of its own. */
const MAX_WAITING = 16;

/** The longest delay setTimeout keeps: a longer one (about 24.8 days or more) fires after
 * 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Run `fn` after `ms` milliseconds, whatever their number: a delay longer than
 * setTimeout keeps is made of several, each re-armed for what is left; Infinity never
 * fires. Cancel with clearTimer. */
function setTimer(fn, ms) {
  const timer = { handle: null };
  if (ms === Infinity) return timer;
  const due = performance.now() + Math.max(0, ms);
  const arm = (left) => {
    timer.handle = setTimeout(() => {
      const rest = due - performance.now();
      if (rest >= 1) arm(rest); else fn();
    }, Math.min(left, MAX_TIMER_MS));
  };
  arm(Math.max(0, ms));
  return timer;
}

function clearTimer(timer) {
  if (timer) clearTimeout(timer.handle);
}

class Channel {
  /**
   * @param {string} url  tcp://host:port or http://host:port
   * @param {{secret?: string|null, timeout?: number, maxSize?: number, maxWaiting?: number}} options
   *   `secret`: the node's shared secret (default: the BERRYMQ_SECRET environment
   *   variable); `timeout`: milliseconds; `maxSize`: the largest request sent, in bytes of
   *   JSON (default MAX_SIZE, the node's default `max_size`); `maxWaiting`: requests that
   *   may wait kept outstanding at once (default MAX_WAITING, the node's `max_waiting`).
   *   What is read of one answer is at most 4x `maxSize` (protocol.answerLimit); over TCP
   *   the options `outboxSize` and `outboxBytes` bound what is written and not yet taken
   *   (tcp.js)
   */
  constructor(url, { secret = process.env.BERRYMQ_SECRET || null, timeout = DEFAULT_TIMEOUT,
    maxSize = MAX_SIZE, maxWaiting = MAX_WAITING } = {}) {
    if (!(Number.isInteger(maxWaiting) && maxWaiting >= 1)) throw new TypeError("'maxWaiting' must be an integer >= 1");
    if (!(Number.isInteger(maxSize) && maxSize >= 2 * ENVELOPE)) {
      // a node's own floor (its max_size setting): a message may take maxSize less the
      // ENVELOPE bytes of the request around it
      throw new TypeError(`'maxSize' must be an integer of at least ${2 * ENVELOPE} bytes (a message may take ` +
                          `maxSize less the ${ENVELOPE} bytes of the request around it), got ${maxSize}`);
    }
    this.url = url;
    this.secret = secret;
    this.timeout = timeout;
    this.maxSize = maxSize;
    this.maxWaiting = maxWaiting;
    this.waitingNow = 0; // requests that may wait, outstanding
    this.queued = []; // those not sent yet, oldest first
    this.nextId = 1;
  }

  /** Run `start(queued)` (a function returning a promise: a request that may wait) once
   * fewer than `maxWaiting` of them are outstanding and none queued before it is waiting
   * for its turn; resolves or rejects as that promise does. `queued` says whether it had
   * to wait for its turn. When `deadline` (a Date.now() value, or null: none) passes
   * before its turn, it is not run: the promise settles as `expired()` does. */
  whenWaitingAllowed(deadline, start, expired) {
    const run = (queued) => {
      this.waitingNow += 1;
      let started;
      try {
        started = Promise.resolve(start(queued));
      } catch (error) {
        started = Promise.reject(error);
      }
      return started.finally(() => {
        this.waitingNow -= 1;
        const next = this.queued.shift();
        if (next !== undefined) next.go();
      });
    };
    if (this.waitingNow < this.maxWaiting && this.queued.length === 0) return run(false);
    return new Promise((resolve, reject) => {
      const turn = { timer: null, go: () => { clearTimer(turn.timer); run(true).then(resolve, reject); } };
      if (deadline !== null) {
        turn.timer = setTimer(() => {
          this.queued.splice(this.queued.indexOf(turn), 1);
          new Promise((settle) => settle(expired())).then(resolve, reject);
        }, Math.max(0, deadline - Date.now()));
      }
      this.queued.push(turn);
    });
  }

  /** The JSON text of `body`, or a rejected promise (TypeError, MessageTooLarge): nothing
   * is sent then, and the channel stays usable. */
  send(body, then) {
    let text;
    try {
      text = encodeRequest(body, this.maxSize);
    } catch (error) {
      return Promise.reject(error);
    }
    return then(text);
  }

  params(params) {
    if (this.secret === null) return params;
    return Array.isArray(params) ? params : { ...params, secret: this.secret };
  }

  /** Call a method; resolves with its result, rejects with a BerryMQError. `wait` is
   * how many seconds the node may take on purpose (a blocking get, an ask). */
  call(method, params = {}, { wait = 0, turn = false } = {}) {
    const body = { jsonrpc: '2.0', method, params: this.params(params), id: null };
    const waits = mayWait(body);
    const go = () => {
      body.id = this.nextId++;
      return this.send(body, (text) => this.request(body, text, this.timeout + (wait || 0) * 1000, waits)).then((reply) => this.resultOf(reply, body.id));
    };
    // `turn`: the caller holds a turn of whenWaitingAllowed already
    return waits && !turn ? this.whenWaitingAllowed(null, go) : go();
  }

  /** The result of `reply` (protocol's resultOf); a node's Unauthorised rejects naming
   * the node and whether this channel sent a secret (the node's answer says neither). */
  resultOf(reply, id) {
    try {
      return resultOf(reply, id, this.url);
    } catch (error) {
      if (!(error instanceof BerryMQError) || error.code !== codes.UNAUTHORISED) throw error;
      const why = this.secret === null ?
        "no secret was given; pass the secret option or set BERRYMQ_SECRET to the node's shared secret" :
        "the secret given was refused (a wrong secret: not the node's shared secret)";
      const refused = new BerryMQError(`${this.url} refused the request: Unauthorised`, error.code, why);
      refused.data = error.data; // (the node's own, if it gave any)
      throw refused;
    }
  }

  /** Send a notification: no id, so the node answers nothing (not even an error).
   * Resolves with nothing once sent, over both transports (over HTTP the answer to an
   * invalid one is not handed out, as over TCP). */
  notify(method, params = {}) {
    const body = { jsonrpc: '2.0', method, params: this.params(params) };
    return this.send(body, (text) => this.post(body, text)).then(() => undefined);
  }

  /** Send a batch, an array of {method, params, notify?}; resolves with what the node
   * answered: the array of its replies to the members that are not notifications (match
   * them by `id`; a member that is not a valid request gets an Invalid Request with `id`
   * null), one error object for an empty batch, or (a batch of notifications only)
   * nothing: [] over TCP, null over HTTP. */
  batch(calls) {
    const body = calls.map((c) => {
      const request = { jsonrpc: '2.0', method: c.method, params: this.params(c.params || {}) };
      if (!c.notify) request.id = this.nextId++;
      return request;
    });
    const waits = mayWait(body);
    const go = () => this.send(body, (text) => this.request(body, text, this.timeout, waits));
    return waits ? this.whenWaitingAllowed(null, go) : go();
  }
}

module.exports = { Channel, DEFAULT_TIMEOUT, MAX_WAITING, setTimer, clearTimer };
