'use strict';
/**
 * A Channel is one connection to a node that speaks the protocol method by method:
 * `call` (a request, resolving with its result), `notify` (no answer), `batch`. The
 * channel writes each request's JSON text here (refusing NaN and Infinity, and a text over
 * `maxSize`, before anything is sent); the transports (tcp.js, http.js) add the framing:
 * `request(body, text, ms, waits)` (`waits`: the node may hold the answer on purpose),
 * `post(body, text)`,
 * `serve(answerer)` (how the node reaches us after interconnect) and `close()`.
 */

const { encodeRequest, MAX_SIZE, resultOf } = require('./protocol');

/** Milliseconds a request may wait for its answer, beyond any wait it asks the node for. */
const DEFAULT_TIMEOUT = 10000;

class Channel {
  /**
   * @param {string} url  tcp://host:port or http://host:port
   * @param {{secret?: string|null, timeout?: number, maxSize?: number}} options  `secret`:
   *   the node's shared secret (default: the BERRYMQ_SECRET environment variable);
   *   `timeout`: milliseconds; `maxSize`: the largest request sent, in bytes of JSON
   *   (default MAX_SIZE, the node's default `max_size`)
   */
  constructor(url, { secret = process.env.BERRYMQ_SECRET || null, timeout = DEFAULT_TIMEOUT,
    maxSize = MAX_SIZE } = {}) {
    this.url = url;
    this.secret = secret;
    this.timeout = timeout;
    this.maxSize = maxSize;
    this.nextId = 1;
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
  call(method, params = {}, { wait = 0 } = {}) {
    const id = this.nextId++;
    const body = { jsonrpc: '2.0', method, params: this.params(params), id };
    return this.send(body, (text) => this.request(body, text, this.timeout + wait * 1000, wait > 0)).then(resultOf);
  }

  /** Send a notification: no id, so the node answers nothing (not even an error). */
  notify(method, params = {}) {
    const body = { jsonrpc: '2.0', method, params: this.params(params) };
    return this.send(body, (text) => this.post(body, text));
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
    return this.send(body, (text) => this.request(body, text, this.timeout, false));
  }
}

module.exports = { Channel, DEFAULT_TIMEOUT };
