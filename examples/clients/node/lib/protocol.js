'use strict';
/**
 * What both transports share: the protocol's error codes and the library's errors,
 * addresses, reading replies, the checks made before a request is sent. No I/O here.
 * (Answering the requests a node sends to an interconnected client: answerer.js.)
 *
 * Errors, one tree:
 *
 *   BerryMQError              every failure; `code` is the JSON-RPC code the node answered,
 *   │                         or null when the node never answered
 *   ├── Empty                 the queue had nothing within the wait (-32002)
 *   ├── MessageTooLarge       a request over the size limit (-32003): refused here before
 *   │                         it was sent (the connection stays usable), or by the node
 *   ├── QueueFull             a bounded queue refused (-32005): the node's, or this
 *   │                         client's outbox over TCP (full for the call's whole timeout;
 *   │                         nothing sent)
 *   └── TransportError        the exchange failed, not the node's answer (code null): a node
 *       │                     that was reached but did not answer in time, or answered
 *       │                     something that is not an answer; the connection stays usable
 *       └── ConnectionClosed  cannot reach the node, or the connection is closed (by us, by
 *                             the node, or a session the node no longer knows: code -32001)
 *   ReplyError                one receiver's failure in ask()'s replies (returned, not thrown)
 */

const { types } = require('util');

/** Error codes of the protocol (docs/protocol.md, "Error codes"). */
const codes = Object.freeze({
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
  UNKNOWN_TOKEN: -32001,
  EMPTY: -32002,
  TOO_LARGE: -32003,
  UNAUTHORISED: -32004,
  QUEUE_FULL: -32005,
  NO_QUEUE: -32006,
  NOT_AVAILABLE: -32007,
  BAD_TOKEN: -32008,
  LIMIT_REACHED: -32009,
});

/** What a node's `data` of `{ setting, limit }` says: `the node's limit is 2000 bytes
 * (setting max_size)`. */
function refusedBy({ setting, limit }) {
  if (typeof limit !== 'number') return `refused by the node's setting ${setting}`;
  return `the node's limit is ${limit}${setting === 'max_size' ? ' bytes' : ''} (setting ${setting})`;
}

/** A failure: an error object the node answered (`code`, `data`), or a transport one. */
class BerryMQError extends Error {
  constructor(message, code = null, data = undefined) {
    // the node's explanation: `data` itself when a text, else `data.detail` when it has
    // one, else the setting that refused (a node's Message too large and Queue is full
    // name only `setting` and `limit`: without them the error did not say why)
    const said = typeof data === 'string' ? data :
      data !== null && typeof data === 'object' && typeof data.detail === 'string' ? data.detail :
        data !== null && typeof data === 'object' && typeof data.setting === 'string' ? refusedBy(data) : null;
    const detail = said === null ? '' : `: ${said}`;
    super(code === null ? message : `${message} (${code})${detail}`);
    this.name = 'BerryMQError';
    this.code = code;
    this.data = data;
  }
}

/** Nothing came from the queue within the wait (`get`), or it is empty (`getNowait`). */
class Empty extends BerryMQError {
  constructor(message = 'Queue is empty') {
    super(message, codes.EMPTY);
    this.name = 'Empty';
  }
}

/** A request over the size limit (-32003): refused before it was sent, when its JSON text
 * is over the channel's `maxSize` (default MAX_SIZE, the node's default `max_size`; the
 * connection stays usable), or by a node with a smaller limit (then over TCP the node
 * closes the connection). `data`: `{ limit, setting: 'max_size' }` (and `size` here). */
class MessageTooLarge extends BerryMQError {
  constructor(detail = null, data = undefined) {
    // our own detail says it all (the node's `data` alone is spelt out by BerryMQError)
    super('Message too large', codes.TOO_LARGE, detail === null ? data : undefined);
    this.data = data;
    if (detail !== null) this.message = `${this.message}: ${detail}`;
    this.name = 'MessageTooLarge';
  }
}

/** A bounded queue refused the message (-32005): the node's (its `data` names the
 * setting), or, over TCP, this client's outbox: the requests written and not yet taken by
 * the node were at `outboxSize` (or `outboxBytes`) for the whole `timeout` of the call, and
 * it was not sent. `data`: `{ setting, limit }`. */
class QueueFull extends BerryMQError {
  constructor(detail = null, data = undefined) {
    super('Queue is full', codes.QUEUE_FULL, detail === null ? data : undefined);
    this.data = data;
    if (detail !== null) this.message = `${this.message}: ${detail}`;
    this.name = 'QueueFull';
  }
}

/** The exchange with the node failed, not for what it answered: it was reached but did not
 * answer in time (only that call fails: the connection stays usable, and a late answer is
 * dropped), or it answered something that is not an answer. */
class TransportError extends BerryMQError {
  constructor(message, code = null, data = undefined) {
    super(message, code, data);
    this.name = 'TransportError';
  }
}

/** The node cannot be reached, or the connection is closed: every later call on it
 * rejects with the same error. Code null, or -32001 (UNKNOWN_TOKEN) for a session the node
 * no longer knows (it expired, or the node restarted). */
class ConnectionClosed extends TransportError {
  constructor(message, code = null, data = undefined) {
    super(message, code, data);
    this.name = 'ConnectionClosed';
  }
}

/** Stands in ask()'s replies for a receiver that failed: `type`, `message`, `receiver`,
 * `node` as the node reported them. Returned in the list, never thrown. */
class ReplyError extends Error {
  constructor({ type = 'Error', message = '', receiver = '', node = '' } = {}) {
    super(`${receiver || 'a receiver'} raised ${type}: ${message}`);
    this.name = 'ReplyError';
    this.type = type;
    this.receiver = receiver;
    this.node = node;
  }
}

/** The error a node's error object stands for. */
function errorFromWire(error) {
  const { code, message, data } = error || {};
  if (code === codes.EMPTY) return new Empty();
  if (code === codes.TOO_LARGE) return new MessageTooLarge(null, data);
  if (code === codes.QUEUE_FULL) return new QueueFull(null, data);
  return new BerryMQError(typeof message === 'string' ? message : 'error', code ?? null, data);
}

/** Split `tcp://host:port` or `http://host:port` (a TypeError for anything else: it is
 * the caller's mistake, not the node's). */
function parseUrl(url) {
  const match = typeof url === 'string' &&
    /^(tcp|http):\/\/(\[[^\]]+\]|[^:/[\]]+):(\d{1,5})\/?$/.exec(url);
  if (!match || Number(match[3]) > 65535) {
    throw new TypeError(`not a berryMQ address: ${JSON.stringify(url)} ` +
                        '(write tcp://host:port or http://host:port)');
  }
  return { scheme: match[1], host: match[2].replace(/^\[|\]$/g, ''), port: Number(match[3]) };
}

/** Whether a JSON value is a response (to one of our requests) rather than a request. */
function isResponse(obj) {
  return obj !== null && typeof obj === 'object' && !Array.isArray(obj) &&
    !('method' in obj) && ('result' in obj || 'error' in obj);
}

/** The JSON text of `value` for an error message, cut after `limit` characters. */
function preview(value, limit = 60) {
  let shown;
  try {
    shown = JSON.stringify(value) ?? String(value);
  } catch (error) {
    shown = String(value);
  }
  return shown.length > limit ? `${shown.slice(0, limit)}...` : shown;
}

/** Whether `error` is a JSON-RPC error object: an object with an integer `code` and a
 * string `message` (docs/protocol.md, "Error codes"). */
function isErrorObject(error) {
  return error !== null && typeof error === 'object' && !Array.isArray(error) &&
    Number.isInteger(error.code) && typeof error.message === 'string';
}

/** The result of a reply, or throw the error it holds. Accepts 2.0 and 1.0 replies (a 1.0
 * reply has both members, one of them null). With the request's `id`, a result for
 * another id (`"id": null`: a request with id null, which this client never sends) is a
 * TransportError naming both, as the Python client's parse_reply says it; an error is
 * taken whatever its id (null: the node could not tie it to a request). What is not a
 * reply, or an error that is not an error object, is a TransportError quoting it. */
function resultOf(reply, id = undefined, url = null) {
  if (!isResponse(reply)) {
    throw new TransportError(`${url === null ? 'the node' : url} answered a malformed JSON-RPC reply: ${preview(reply, 200)}`);
  }
  if (reply.error !== undefined && reply.error !== null) {
    if (!isErrorObject(reply.error)) {
      // not the node's error: its words would be lost in a BerryMQError of code null
      throw new TransportError(`${url === null ? 'the node' : url} answered an error that is not a JSON-RPC error ` +
                               `object (an integer code and a string message): ${preview(reply, 200)}`);
    }
    throw errorFromWire(reply.error);
  }
  if (id !== undefined && reply.id !== id) {
    throw new TransportError(`${url}: reply to request ${String(JSON.stringify(reply.id))}, expected ${JSON.stringify(id)}`);
  }
  return reply.result;
}

/** A message as the library hands it out: `{ id, args, kwargs, extras }`. */
function message(identifier, args, kwargs, extras) {
  if (typeof identifier !== 'string' || !Array.isArray(args) ||
      kwargs === null || typeof kwargs !== 'object' || Array.isArray(kwargs)) {
    throw new TypeError('a message is [identifier, args (array), kwargs (object)]');
  }
  return { id: identifier, args, kwargs, extras: extras && typeof extras === 'object' ? extras : {} };
}

function messageFromWire(entry) {
  if (!Array.isArray(entry)) throw new TypeError('a message is [identifier, args (array), kwargs (object)]');
  return message(entry[0], entry[1], entry[2], entry[3]);
}

/** The largest request a node accepts by default (its `max_size` setting), in bytes of
 * JSON text (a TCP line without its newline, an HTTP body). */
const MAX_SIZE = 1048576;

/** The deepest a message's own form, [identifier, args, kwargs], may nest arrays and
 * objects (`args` is level 2): what a node keeps and forwards (docs/protocol.md,
 * "Nesting"; a text may nest 128 levels, and a message travels at most 4 deep in one). */
const MAX_MESSAGE_DEPTH = 124;

/** Call `visit(i, depth)` for each bracket of the JSON text `text` outside strings, at
 * index `i`, with the depth it opens (an opening bracket) or closes (a closing one, as a
 * negative number); the walk stops when `visit` returns true, and so does this. */
function walkBrackets(text, visit) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92) i += 1; // a backslash escapes the next character
      else if (c === 34) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (c === 91 || c === 123) {
      depth += 1;
      if (visit(i, depth)) return true;
    } else if (c === 93 || c === 125) {
      if (visit(i, -depth)) return true;
      depth -= 1;
    }
  }
  return false;
}

/** Whether the JSON text `text` nests arrays and objects more than `limit` levels
 * (brackets inside strings do not count). */
function nestedDeeper(text, limit) {
  if (text.length <= 2 * limit) return false;
  return walkBrackets(text, (_, depth) => depth > limit);
}

/** The deepest a JSON text read from a peer may nest arrays and objects: a node's own
 * limit (berrymq._nesting MAX_DEPTH; docs/protocol.md, "Nesting"). A deeper text is not
 * read: a request is answered as a node answers it (NESTED_TOO_DEEP_REPLY), an answer is
 * a TransportError naming the limit (tooDeepAnswer). JSON.parse itself would read it,
 * millions of levels deep, into what the first JSON.stringify of it (or any recursive
 * walk) fails on with a RangeError. */
const MAX_DEPTH = 128;

/** What a node says of such a text (berrymq.wire.NestedTooDeep), word for word. */
const NESTED_TOO_DEEP = `the text nests arrays and objects more than ${MAX_DEPTH} levels deep, the limit`;

/** A node's answer to a request text nested deeper than MAX_DEPTH: a Parse error whose
 * `data` names the limit (berrymq_jsonrpc.jsonrpc, Dispatcher.parse_error); nothing of it
 * runs. */
const NESTED_TOO_DEEP_REPLY = Object.freeze({ jsonrpc: '2.0', error: Object.freeze({ code: codes.PARSE_ERROR,
  message: 'Parse error', data: Object.freeze({ limit: MAX_DEPTH, detail: NESTED_TOO_DEEP }) }), id: null });

/** The error of a call whose answer from `url` is nested deeper than MAX_DEPTH. */
function tooDeepAnswer(url) {
  return new TransportError(`${url} answered with a text that is not read: ${NESTED_TOO_DEEP} ` +
                            '(docs/protocol.md, "Nesting")');
}

/** The JSON text `text` with each array and object nested deeper than `keep` levels
 * written as null: its top levels (a response's id, whether it holds an error), read
 * without building what lies deeper. Valid JSON when `text` is. */
function shallow(text, keep) {
  let kept = '';
  let from = 0; // where the text kept since the last cut begins
  walkBrackets(text, (i, depth) => {
    if (depth === keep + 1) kept += `${text.slice(from, i)}null`;
    else if (depth === -(keep + 1)) from = i + 1;
    return false;
  });
  return kept + text.slice(from);
}

/** A TypeError, before anything is sent, for a message nested deeper than
 * MAX_MESSAGE_DEPTH: the node could not keep it (its answer would be a Parse error).
 * Returns the JSON text of `[args, kwargs]` (undefined when JSON writes nothing). */
function checkDepth(identifier, args, kwargs) {
  let text;
  try {
    text = JSON.stringify([args, kwargs]); // args and kwargs at level 2, as in the message
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    text = null; // the stack ran out, thousands of levels down: deeper than the limit
  }
  if (text === null || (text !== undefined && nestedDeeper(text, MAX_MESSAGE_DEPTH))) {
    throw new TypeError(`message ${identifier} cannot be sent: it is nested more than ${MAX_MESSAGE_DEPTH} ` +
                        'levels deep, the limit (its args and kwargs count from level 2); nothing was sent');
  }
  return text;
}

/** What a node keeps around a message in a request: a message may be at most its
 * `max_size` less this, as the node measures it (the JSON of [identifier, args, kwargs,
 * extras]), or the node cannot forward it to a peer (berrymq_jsonrpc.outbox, ENVELOPE). */
const ENVELOPE = 512;

/** Room kept for the extras a message gets on its way, a uid (`,{"uid":"..."}` of 20
 * characters: 30 bytes; the client adds it on an interconnection, a node when it
 * forwards). */
const UID_ROOM = 31;

/** MessageTooLarge, before anything is sent, for a message over `maxSize` - ENVELOPE
 * bytes of JSON with room for its uid; `text` is the JSON of its [args, kwargs] (from
 * checkDepth). A node would take a larger one in a request of up to `maxSize` (it
 * answered "ok"), then fail to forward it to its peers or keep it in a queue. */
function checkSize(identifier, text, maxSize) {
  if (text === undefined) return;
  const limit = maxSize - ENVELOPE;
  // [identifier, args, kwargs] is "[" identifier "," and the rest of "[args,kwargs]"
  const size = Buffer.byteLength(JSON.stringify(identifier), 'utf8') + 1 + Buffer.byteLength(text, 'utf8') + UID_ROOM;
  if (size > limit) {
    throw new MessageTooLarge(`message ${identifier} of ${size} bytes of JSON (with ${UID_ROOM} for its uid) is over ` +
                              `the limit of ${limit} bytes (maxSize ${maxSize}, the node's max_size, less ${ENVELOPE} ` +
                              'for the request around it); it was not sent', { limit, setting: 'max_size', size });
  }
}

/** The name of a collection JSON.stringify writes as {}, whatever it holds (its entries
 * are not its members), or null: `Map`, `Set`, `WeakMap`, `WeakSet`. By util.types, so
 * that one made in another realm (a vm context, a worker's structured clone) is found
 * too, where instanceof would miss it. */
function collectionName(value) {
  if (types.isMap(value)) return 'Map';
  if (types.isSet(value)) return 'Set';
  if (types.isWeakMap(value)) return 'WeakMap';
  if (types.isWeakSet(value)) return 'WeakSet';
  return null;
}

/** Why JSON cannot carry a non-finite number. */
const NOT_FINITE = 'NaN and Infinity are not JSON';

/** What JSON cannot carry of `value` (past its toJSON), as [what it is, why], or null:
 * what JSON.stringify would quietly write as null (NaN, Infinity, a Number object of
 * either; undefined, a function or a symbol in an array, `inArray`), as {} (a Map, a Set,
 * a WeakMap, a WeakSet) or as nothing at all (a function or a symbol that is the whole
 * value, `top`). Follows JSON.stringify's own rule for an object's member: one that is
 * undefined, a function or a symbol is left out, as if absent (a class instance goes
 * without its methods and arrow-function fields), and is allowed. A BigInt is left to
 * JSON.stringify, which throws its own TypeError. */
function notJson(value, inArray, top) {
  switch (typeof value) {
    case 'number':
      return value - value === 0 ? null : [String(value), NOT_FINITE];
    case 'undefined':
      return inArray ? ['undefined', 'JSON has no undefined, and JSON.stringify would write null for it'] : null;
    case 'function':
      return inArray || top ? ['a function', 'JSON has no functions'] : null;
    case 'symbol':
      return inArray || top ? [String(value), 'JSON has no symbols'] : null;
    case 'object': {
      if (value === null) return null;
      if (types.isNumberObject(value)) {
        const number = Number(value); // as JSON.stringify reads it
        return number - number === 0 ? null : [`${number} (a Number object)`, NOT_FINITE];
      }
      const kind = collectionName(value);
      return kind === null ? null :
        [`a ${kind}`, 'JSON.stringify would write it as {}, without its entries (send an array or a plain object)'];
    }
    default:
      return null;
  }
}

/** The first thing in `value`, held at `key` (of an array: `inArray`; `top`: the whole
 * value), that JSON cannot carry (notJson), walked as JSON.stringify walks it (toJSON
 * first, an array's elements, an object's own enumerable members), as [what, why, path]:
 * `path` its place from `value` down, each step `[2]` or `.name`, in reverse. Or null.
 * (A plain object, of Object.prototype, is not asked whether it is a Map or a Number
 * object: util.types calls into C++, the most of the walk's time if made for each.) */
function findNotJson(value, key, inArray, top) {
  if (value !== null && (typeof value === 'object' || typeof value === 'function' || typeof value === 'bigint') &&
      typeof value.toJSON === 'function') {
    value = value.toJSON(String(key));
  }
  if (value === null || typeof value !== 'object') {
    const problem = notJson(value, inArray, top);
    return problem === null ? null : [problem[0], problem[1], []];
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) {
      const member = value[i];
      if (typeof member === 'string' || typeof member === 'boolean' || (typeof member === 'number' && member - member === 0)) {
        continue; // (the most of a long array, checked without a call)
      }
      const found = findNotJson(member, i, true, false);
      if (found !== null) {
        found[2].push(`[${i}]`);
        return found;
      }
    }
    return null;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) {
    const problem = notJson(value, inArray, top);
    if (problem !== null) return [problem[0], problem[1], []];
    if (types.isBoxedPrimitive(value)) return null; // written as its number, string or boolean
  }
  for (const name of Object.keys(value)) {
    const member = value[name];
    const type = typeof member;
    if (member === null || type === 'string' || type === 'boolean' || type === 'undefined' || type === 'symbol' ||
        (type === 'number' && member - member === 0)) {
      continue; // (checked without a call; undefined and a symbol are left out, as a function without toJSON)
    }
    const found = findNotJson(member, name, false, false);
    if (found !== null) {
      found[2].push(`.${name}`);
      return found;
    }
  }
  return null;
}

/** Whether `text` holds `{}` at most `most` times. */
function emptiesAtMost(text, most) {
  let count = 0;
  for (let at = text.indexOf('{}'); at !== -1; at = text.indexOf('{}', at + 2)) {
    count += 1;
    if (count > most) return false;
  }
  return true;
}

/** JSON.stringify(value), but what JSON cannot carry as it is (notJson) anywhere in it
 * throws `refuse(what, where, why, value)` instead, `where` its path (`params.args[0].a`,
 * '' for `value` itself).
 *
 * Written by JSON.stringify alone first (what it does natively, several times faster than
 * with a replacer, which calls back into JavaScript for every value), and walked only
 * when its text may hide a change: what it quietly changes leaves a trace in it, `null`
 * (NaN, Infinity, a Number object of either; undefined, a function or a symbol in an
 * array) or `{}` (a Map, a Set, a WeakMap or a WeakSet without members of its own), or
 * there is no text (a function or a symbol that is the whole value). `ownEmpty(value)`:
 * how many of the `{}` are known to be the caller's own empty plain objects
 * (requestEmpties), not a trace. Another `null` or `{}` that is no trace (an empty
 * object, a string holding "null") costs one walk, in JavaScript, and nothing is refused.
 * (A function or a symbol as an object's member, left out, leaves no trace: it is
 * allowed. So does a collection with members of its own, written as those:
 * `Object.assign(new Map(), { a: 1 })` goes as {"a":1}, as JSON.stringify writes it.) */
function jsonText(value, refuse, ownEmpty = null) {
  const text = JSON.stringify(value);
  if (text !== undefined && !text.includes('null') &&
      (!text.includes('{}') || (ownEmpty !== null && emptiesAtMost(text, ownEmpty(value))))) {
    return text;
  }
  const found = findNotJson(value, '', false, true);
  if (found === null) return text;
  const where = found[2].reverse().join('');
  throw refuse(found[0], where.startsWith('.') ? where.slice(1) : where, found[1], value);
}

/** Whether `value` is written as exactly `{}`: a plain object without members or toJSON. */
function emptyPlain(value) {
  return value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype &&
    typeof value.toJSON !== 'function' && Object.keys(value).length === 0;
}

/** How many `{}` of a request's text are the kwargs of its messages that are empty plain
 * objects (sendMessage's and ask's default, `kwargs` of params or the third member of
 * each of send_messages' `messages`), each written as one `{}`: with no more `{}` than
 * these, and no `null`, no Map or Set is hidden in it, and the text needs no walk. 0 for
 * a batch. */
function requestEmpties(body) {
  const params = body !== null && typeof body === 'object' && !Array.isArray(body) ? body.params : undefined;
  if (params === null || typeof params !== 'object' || Array.isArray(params) || typeof params.toJSON === 'function') return 0;
  let count = emptyPlain(params.kwargs) ? 1 : 0;
  const { messages } = params;
  if (Array.isArray(messages) && typeof messages.toJSON !== 'function') {
    for (const m of messages) {
      if (Array.isArray(m) && typeof m.toJSON !== 'function' && emptyPlain(m[2])) count += 1;
    }
  }
  return count;
}

/** The TypeError of encodeRequest for `what` at `where` in the request (or batch) `body`. */
function refuseInRequest(what, where, why, body) {
  const method = (Array.isArray(body) ? body[Number(where.slice(1, where.indexOf(']')))] : body) || {};
  return new TypeError(`${what} cannot be sent (at ${where} of a ${method.method} request): ${why}; nothing was sent`);
}

/** The JSON text of a request (or batch) `body`. A TypeError naming where, before
 * anything is sent, for what JSON cannot carry anywhere in it (notJson: NaN, Infinity,
 * undefined, a function or a symbol in an array, a Map, a Set), which JSON.stringify would
 * quietly write as null or as {}; MessageTooLarge when the text is over `maxSize` bytes.
 * An object's member that is undefined, a function or a symbol is left out, as
 * JSON.stringify leaves it out. */
function encodeRequest(body, maxSize = MAX_SIZE) {
  const text = jsonText(body, refuseInRequest, requestEmpties);
  const size = Buffer.byteLength(text, 'utf8');
  if (size > maxSize) {
    const method = Array.isArray(body) ? 'batch' : `${body.method}`;
    throw new MessageTooLarge(`${/^[aeiou]/.test(method) ? 'an' : 'a'} ${method} request of ${size} bytes is over the limit of ${maxSize} bytes; ` +
                              'it was not sent', { limit: maxSize, setting: 'max_size', size });
  }
  return text;
}

/** Whether `r` is a request object the node accepts as such (JSON-RPC 2.0 as this
 * library writes it: a `method` string, `params` absent, an object or an array). */
function validRequest(r) {
  return r !== null && typeof r === 'object' && !Array.isArray(r) && typeof r.method === 'string' &&
    (r.params === undefined || (r.params !== null && typeof r.params === 'object'));
}

/** Whether the node answers a request (or batch member) `r`: it has an `id`, or it is not
 * a valid request, which the node answers with Invalid Request (`id` null) even without
 * an `id`. */
function expectsAnswer(r) {
  return !validRequest(r) || 'id' in r;
}

/** Whether the node may answer request `r` out of order on a TCP connection: a valid
 * `ask` or blocking `get` (or a batch with one) runs beside the others, which are
 * answered in the order they came (docs/protocol.md, "Limits", `max_waiting`). */
function mayWait(r) {
  if (Array.isArray(r)) return r.some(mayWait);
  if (!validRequest(r)) return false;
  if (r.method === 'ask') return true;
  if (r.method !== 'get') return false;
  const block = Array.isArray(r.params) ? r.params[1] : (r.params || {}).block;
  return block !== false;
}

/** What is read of one answer of the node (a TCP line, an HTTP body) is at most this many
 * times the client's `maxSize` (docs/protocol.md, "Limits": an answer to a batch may be
 * larger than any request, and a node keeps its answers within 4x its `max_size`, a
 * message within the smaller of its `max_size` and the one the client connected with).
 * More is a broken peer: the connection is closed and the waiting calls fail naming it. */
const ANSWER_FACTOR = 4;

/** What the factor multiplies: `maxSize`, but 1 MiB (a node's default `max_size`) when it is
 * smaller: a node bounds its answers by its own `max_size`, not the client's (an `ask`'s
 * replies), so a client with a smaller `maxSize` still reads what a default node answers. */
function answerBasis(maxSize) {
  return Math.max(maxSize, MAX_SIZE);
}

/** The longest answer read by a channel of `maxSize`. */
function answerLimit(maxSize) {
  return ANSWER_FACTOR * answerBasis(maxSize);
}

/** The longest token taken from a node's answer to connect_* or interconnect: room for
 * every token a node issues (43 characters) or a JSON-RPC 1.0 peer proposes (16 to 128),
 * while a node answering megabytes (every later request would carry them) is refused. */
const MAX_ANSWERED_TOKEN = 256;

/** What is wrong with `token`, what a node answered a connect_* or interconnect with, or
 * null: a token is 1 to MAX_ANSWERED_TOKEN printable ASCII characters without spaces
 * (docs/protocol.md, "Sessions and tokens"; berrymq_jsonrpc.protocol.token_problem). */
function tokenProblem(token) {
  if (token === null) return 'null';
  if (typeof token !== 'string') {
    return `not a string but ${Array.isArray(token) ? 'an array' : typeof token === 'object' ? 'an object' : `a ${typeof token}`}`;
  }
  if (token.length === 0) return 'empty';
  if (token.length > MAX_ANSWERED_TOKEN) return `${token.length} characters long, over ${MAX_ANSWERED_TOKEN}`;
  if (!/^[\x21-\x7e]+$/.test(token)) return 'not printable ASCII without spaces';
  return null;
}

/** The media types a node takes a JSON-RPC request in (docs/dialects.md); the callback
 * server of interconnect takes the same (or none). */
const MEDIA_TYPES = new Set(['application/json', 'application/json-rpc', 'application/jsonrequest', 'text/xml']);

const PARSE_ERROR_REPLY = Object.freeze({ jsonrpc: '2.0', error: { code: codes.PARSE_ERROR, message: 'Parse error' }, id: null });

module.exports = {
  codes, BerryMQError, Empty, MessageTooLarge, TransportError, ConnectionClosed, ReplyError, errorFromWire, parseUrl,
  isResponse, resultOf, message, messageFromWire, preview, jsonText, MAX_SIZE, PARSE_ERROR_REPLY, QueueFull, answerBasis, answerLimit, ANSWER_FACTOR,
  tokenProblem, MAX_ANSWERED_TOKEN,
  encodeRequest, expectsAnswer, mayWait, MEDIA_TYPES, MAX_MESSAGE_DEPTH, checkDepth, checkSize, ENVELOPE, nestedDeeper,
  MAX_DEPTH, NESTED_TOO_DEEP_REPLY, tooDeepAnswer, shallow,
};
