'use strict';
/**
 * The answering side of an interconnected client (docs/protocol.md, "Style 01"): the
 * requests a node sends it (`send_messages`, `send_message`, `ask`), each answered with a
 * JSON-RPC reply. Kept apart from protocol.js, which the sending side uses, so that
 * what the client answers can be read (and changed) in one place. No I/O here: the
 * transports (tcp.js, http.js) hand it parsed bodies and write what it returns.
 */

const { codes, jsonText, MAX_MESSAGE_DEPTH, message, messageFromWire, nestedDeeper } = require('./protocol');
const uids = require('./uids');

/** Name the params of a request given by position, in the order of the protocol's tables. */
const POSITIONS = {
  send_message: ['token', 'identifier', 'args', 'kwargs'],
  send_messages: ['token', 'messages'],
  ask: ['identifier', 'args', 'kwargs', 'timeout', 'token'],
};

function named(method, params) {
  if (!Array.isArray(params)) return params && typeof params === 'object' ? params : {};
  const names = POSITIONS[method] || [];
  return Object.fromEntries(names.map((name, i) => [name, params[i]]).filter(([, v]) => v !== undefined));
}

/** The extras of a forwarded message (docs/protocol.md, "Messages on the wire"). */
const EXTRAS = ['uid', 'hops', 'reply_to'];

/** One failed reply of onAsk as it crosses (docs/protocol.md, "ask"). */
function replyError(type, text) {
  return { error: { type, message: text, receiver: 'onAsk', node: 'node.js' } };
}

/** What onAsk returned as it crosses: `{ value }`, or, as a node does for a receiver's
 * reply, a TypeError entry for a value JSON cannot carry: a BigInt, a cycle, and what
 * JSON.stringify would quietly change (NaN and Infinity, which the asker would read as
 * null; undefined, a function or a symbol in an array or as the whole reply, a Map or a
 * Set: protocol.jsonText, as a request is checked; an object's member that is undefined,
 * a function or a symbol is left out, as JSON.stringify leaves it out), or one nested
 * deeper than MAX_MESSAGE_DEPTH (docs/protocol.md,
 * "Nesting": the node could not read the answer, or forward the reply). Checked
 * here, where the answer is still made: writing it later would throw on the connection's
 * way out, and the node would wait for an answer that never comes. */
function replyEntry(value) {
  let text;
  try {
    text = jsonText(value, (what, where, why) => new TypeError(where === '' ? why : `${what} at ${where}: ${why}`));
  } catch (error) {
    // a RangeError: the stack ran out, thousands of levels down
    if (error instanceof RangeError) return tooDeep();
    return replyError('TypeError', `the reply ${describe(value)} is not JSON (${error.message.split('\n')[0]})`);
  }
  if (text === undefined) return replyError('TypeError', `the reply ${describe(value)} is not JSON`);
  if (nestedDeeper(text, MAX_MESSAGE_DEPTH)) return tooDeep();
  return { value };
}

function tooDeep() {
  return replyError('TypeError', `the reply is nested more than ${MAX_MESSAGE_DEPTH} levels deep, the limit`);
}

/** The kind of a value, for an error message: `BigInt`, `Object`, `function`, `NaN`. */
function describe(value) {
  if (typeof value === 'bigint') return 'BigInt';
  if (typeof value === 'number') return String(value); // NaN, Infinity
  if (value !== null && typeof value === 'object') return (value.constructor && value.constructor.name) || 'Object';
  return typeof value;
}

/** What an Invalid Request's `data` says, in a node's own words (berrymq_jsonrpc.jsonrpc,
 * validate_request), so that a peer reads the same reason from either side. */
const PROBLEMS = Object.freeze({
  object: 'a request is a JSON object (a batch is an array of them, not nested)',
  jsonrpc: 'the jsonrpc member must be the string 2.0, or be absent in a JSON-RPC 1.0 request ' +
    '(which a batch cannot hold)',
  method: 'the method member must be a string',
  params: 'the params member must be an array or an object',
  id: 'the id member must be a string, a number or null',
  members: 'a request has no members but jsonrpc, method, params and id',
});
const EMPTY_BATCH = 'an empty batch: send at least one request';
const MEMBERS = new Set(['jsonrpc', 'method', 'params', 'id']);

/** Which rule `request` breaks (the words of PROBLEMS), or null for a valid request: the
 * rules of a node, which reads a 1.0 request (no `jsonrpc`) as its 2.0 form. */
function requestProblem(request, inBatch) {
  const isObject = (value) => value !== null && typeof value === 'object' && !Array.isArray(value);
  if (!isObject(request)) return PROBLEMS.object;
  if (request.jsonrpc === undefined ? inBatch : request.jsonrpc !== '2.0') return PROBLEMS.jsonrpc;
  if (typeof request.method !== 'string') return PROBLEMS.method;
  if (request.params !== undefined && !(Array.isArray(request.params) || isObject(request.params))) return PROBLEMS.params;
  if (request.id !== undefined && request.id !== null && typeof request.id !== 'string' && typeof request.id !== 'number') {
    return PROBLEMS.id;
  }
  if (Object.keys(request).some((key) => !MEMBERS.has(key))) return PROBLEMS.members;
  return null;
}

function invalidRequest(problem) {
  return { jsonrpc: '2.0', error: { code: codes.INVALID_REQUEST, message: 'Invalid Request', data: problem }, id: null };
}

/** An error object to answer a node with, as it stands. */
class Refusal extends Error {
  constructor(object) {
    super(object.message);
    this.object = object;
  }
}

/**
 * Answers the requests a node sends to an interconnected client: `send_messages`,
 * `send_message` and `ask` (JSON-RPC 2.0, or 1.0 when the request has no `jsonrpc`),
 * checking the token the client proposed. Unknown extras are ignored. A message (or an
 * ask) that comes back round a cycle of nodes, or by a second interconnection (same
 * `uid`, remembered for the whole process: uids.js), is delivered (answered) once; one
 * this process sent is not delivered back to it.
 */
class Answerer {
  constructor(token, onMessage, onAsk, onError) {
    this.token = token;
    this.onMessage = onMessage;
    this.onAsk = onAsk;
    this.onError = onError;
  }

  /** The reply to one request (null for a notification); `inBatch`: it is a member of
   * a batch, which a JSON-RPC 1.0 request (no `jsonrpc`) cannot be. */
  async answer(request, inBatch = false) {
    const problem = requestProblem(request, inBatch);
    // a JSON-RPC 1.0 request (an object without jsonrpc, not in a batch) is answered in
    // 1.0 form, an invalid one too, as a node answers it (berrymq_jsonrpc.dialect)
    const v1 = !inBatch && request !== null && typeof request === 'object' && !Array.isArray(request) &&
      request.jsonrpc === undefined;
    if (problem !== null) {
      const invalid = invalidRequest(problem);
      return v1 ? { result: null, error: invalid.error, id: null } : invalid;
    }
    const id = request.id !== undefined ? request.id : null;
    const reply = (body) => (v1 ? { result: null, error: null, ...body, id } : { jsonrpc: '2.0', ...body, id });
    // a notification has no id member, in 1.0 as in 2.0: a 1.0 request with "id": null
    // is answered, as a node answers it (docs/dialects.md: the original berryMQ's client
    // sends every call so, and waits for the answer)
    const notification = !('id' in request);
    let body;
    try {
      body = { result: await this.run(request.method, named(request.method, request.params)) };
    } catch (error) {
      body = { error: error instanceof Refusal ? error.object :
        { code: codes.INVALID_PARAMS, message: 'Invalid params', data: error.message } };
    }
    return notification ? null : reply(body);
  }

  async run(method, params) {
    if (method !== 'send_messages' && method !== 'send_message' && method !== 'ask') {
      throw new Refusal({ code: codes.METHOD_NOT_FOUND, message: 'Method not found', data: method });
    }
    // the node sends our token with every request, ask included: without it, anyone who
    // can reach us (a web page, over HTTP) could make our receivers run
    if (params.token !== this.token) {
      throw new Refusal({ code: codes.UNKNOWN_TOKEN, message: 'Unknown or expired token' });
    }
    if (method === 'ask') return this.ask(params);
    const { identifier, args = [], kwargs = {}, messages } = params;
    // the extras berryMQ knows; other params (a secret, what a newer node adds) are not ours
    const extras = Object.fromEntries(EXTRAS.filter((k) => params[k] !== undefined).map((k) => [k, params[k]]));
    const entries = method === 'send_messages' ? messages : [[identifier, args, kwargs, extras]];
    if (!Array.isArray(entries)) throw new TypeError("'messages' must be an array");
    const batch = entries.map(messageFromWire); // all checked before any is delivered
    for (const each of batch) {
      if (!uids.firstTime(each.extras.uid)) continue;
      try {
        const done = this.onMessage(each);
        // an async onMessage (or one returning a promise) fails later: its rejection is
        // reported too, not left unhandled (which ends the process)
        if (done !== null && typeof done === 'object' && typeof done.then === 'function') {
          Promise.resolve(done).catch((error) => this.report(error, each));
        }
      } catch (error) {
        this.report(error, each);
      }
    }
    return 'ok';
  }

  /** Hand what onMessage threw (or rejected with) to onError; what onError throws in
   * turn is printed on stderr, never thrown on (the node has its answer already). */
  report(error, each) {
    try {
      this.onError(error, each);
    } catch (failed) {
      console.error(`berrymq: onError failed for ${each.id}: ${failed && failed.stack}`);
    }
  }

  async ask(params) {
    const question = message(params.identifier, params.args || [], params.kwargs || {},
      { uid: params.uid, hops: params.hops });
    if (!this.onAsk) return [];
    // an ask is answered once, as a message is delivered once: one that came back round
    // a cycle (our own, or seen by another way) gets [], as from a node
    if (!uids.firstTime(params.uid)) return [];
    let value;
    try {
      value = await this.onAsk(question);
    } catch (error) {
      const failed = error instanceof Error;
      return [replyError(failed && error.name ? error.name : 'Error', failed ? String(error.message) : String(error))];
    }
    return value === undefined ? [] : [replyEntry(value)];
  }

  /** Answer a parsed body (a request or a batch); null when nothing is to be answered. */
  async answerBody(body) {
    if (!Array.isArray(body)) return this.answer(body);
    if (body.length === 0) return invalidRequest(EMPTY_BATCH);
    const answers = (await Promise.all(body.map((r) => this.answer(r, true)))).filter((a) => a !== null);
    return answers.length ? answers : null;
  }
}

/**
 * Answers what a node sends on a TCP connection that serves no methods (oneway, queue:
 * no Answerer), by a node's rules, as a Python client's connection answers it: Invalid
 * Request (-32600, `id` null) for what is not a request (`42`, `null`, one for each member
 * of `[1, 2, 3]`), Method not found (-32601) for a request, nothing for a notification.
 * A response, an error one included, is never answered (the channel takes it as one), so
 * that two peers cannot answer each other's answers without end.
 */
class Refuser extends Answerer {
  constructor() {
    super(null, null, null, null);
  }

  async run(method) {
    throw new Refusal({ code: codes.METHOD_NOT_FOUND, message: 'Method not found', data: method });
  }
}

module.exports = { Answerer, Refuser };
