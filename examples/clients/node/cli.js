#!/usr/bin/env node
'use strict';
/**
 * berrymq-js: a command line over berrymq.js, with the verbs of the Python `berrymq`
 * command (run `berrymq-js --help`). Exit status: 0 done, 1 the run failed (the node is
 * unreachable, refused a request, or closed the connection), 2 the command line is wrong
 * (unknown verb, missing argument, bad option, not a tcp:// or http:// URL). Errors are
 * one line on stderr, `berrymq-js: error: ...`.
 */

const berrymq = require('./berrymq');
const { parseUrl } = require('./lib/protocol');
const { version } = require('./package.json');

const USAGE = `usage: berrymq-js VERB URL ...   (URL: tcp://HOST:PORT or http://HOST:PORT)

  send URL ID [ARGS...] [--kw KEY=VALUE]...    send one message (style 02); exits once the
                                               node acknowledged it
  listen URL PATTERN [--count N] [--json]      print the messages matching PATTERN (style 03),
                                               one line each, until N were printed or Ctrl-C
  interconnect URL [--count N] [--ttl S]      print every message the node forwards
                                               (style 01) after a line "interconnected";
                                               answers the node's asks; sends node:joined;
                                               renews the session every S/3 s (S: 60);
                                               exit status 1 when the node ends it
  ask URL ID [ARGS...] [--kw KEY=VALUE]... [--timeout S]
                                               print the replies of the node's receivers
                                               as one JSON array
  selftest URL                                 call every method once, print what happens

ARGS and VALUEs are taken as JSON when they are valid JSON (3, true, [1,2], '"3"'), else
as strings. A node with a shared secret needs BERRYMQ_SECRET set.
Exit status: 0 done, 1 the run failed (unreachable node, refused request), 2 usage error
(also an argument the node finds invalid, such as a malformed identifier).`;

/** A mistake on the command line: exit status 2. */
class UsageError extends Error {}

/** Whether a parsed JSON value holds a number that is not finite (1e400 is read as
 * Infinity, which JSON cannot carry). */
function notFinite(value) {
  if (typeof value === 'number') return !Number.isFinite(value);
  if (value === null || typeof value !== 'object') return false;
  return Object.values(value).some(notFinite);
}

function parseValue(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return text;
  }
  if (notFinite(value)) {
    throw new UsageError(`${JSON.stringify(text)} holds a number too large for JSON (it is not finite); ` +
                         'quote it to send it as a string');
  }
  return value;
}

/** A UsageError for an argument that was not UTF-8: Node reads the command line as
 * UTF-8 and puts U+FFFD (the replacement character) for each byte that is not, so what
 * would be sent is not what was typed. */
function checkUtf8(argv) {
  const index = argv.findIndex((arg) => arg.includes('\uFFFD'));
  if (index >= 0) {
    throw new UsageError(`argument ${index + 1} (${JSON.stringify(argv[index])}) is not UTF-8 text: ` +
                         'it has a byte that is not UTF-8 (or U+FFFD itself)');
  }
}

/** Split argv into positional words and options (`--name value`, repeatable, or flags). */
function parseArgs(argv, { values = [], flags = [] }) {
  const words = [];
  const options = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (values.includes(arg)) {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      (options[arg] = options[arg] || []).push(argv[i += 1]);
    } else if (flags.includes(arg)) {
      options[arg] = true;
    } else if (arg.startsWith('--') && arg.length > 2) {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      words.push(arg);
    }
  }
  return { words, options };
}

function number(options, name, fallback, { integer = false, least = 0 } = {}) {
  const text = (options[name] || []).at(-1);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < least || (integer && !Number.isInteger(value))) {
    throw new UsageError(`${name} takes a ${integer ? 'whole ' : ''}number >= ${least}, not ${JSON.stringify(text)}`);
  }
  return value;
}

function kwargsOf(options) {
  const kwargs = {};
  for (const pair of options['--kw'] || []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`--kw takes KEY=VALUE, not ${JSON.stringify(pair)}`);
    kwargs[pair.slice(0, eq)] = parseValue(pair.slice(eq + 1));
  }
  return kwargs;
}

function checkUrl(url) {
  try {
    parseUrl(url);
  } catch (error) {
    throw new UsageError(error.message);
  }
  return url;
}

function format(message) {
  let line = `${message.id} ${JSON.stringify(message.args)}`;
  if (Object.keys(message.kwargs).length) line += ` ${JSON.stringify(message.kwargs)}`;
  return line;
}

const say = (text) => process.stdout.write(`${text}\n`);

/** Resolves on SIGINT or SIGTERM (Ctrl-C stops listen and interconnect cleanly). */
function stopSignal() {
  return new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

async function send(url, identifier, args, kwargs) {
  const connection = await berrymq.connectOneway(url, { ttl: 60 });
  try {
    await connection.sendMessage(identifier, args, kwargs);
  } finally {
    await connection.close().catch(() => {}); // the session expires on the node anyway
  }
}

async function ask(url, identifier, args, kwargs, timeout) {
  const connection = await berrymq.connectOneway(url, { ttl: 60 });
  try {
    const replies = await connection.ask(identifier, args, kwargs, { timeout });
    say(JSON.stringify(replies.map((r) => (r instanceof berrymq.ReplyError ?
      { error: { type: r.type, message: r.message, receiver: r.receiver } } : r))));
  } finally {
    await connection.close().catch(() => {});
  }
}

async function listen(url, pattern, count, json) {
  const queue = await berrymq.connectViaQueue(url, pattern, { ttl: 60 });
  console.error(`listening to ${pattern} at ${url}`);
  const stop = stopSignal();
  try {
    for (let seen = 0; count === null || seen < count; seen += 1) {
      const message = await Promise.race([queue.get(), stop.then(() => null)]);
      if (message === null) break;
      say(json ? JSON.stringify({ id: message.id, args: message.args, kwargs: message.kwargs }) : format(message));
    }
  } finally {
    await queue.close().catch(() => {});
  }
}

async function interconnect(url, count, ttl) {
  let seen = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const show = (message) => {
    if (count !== null && seen >= count) return;
    say(format(message));
    seen += 1;
    if (count !== null && seen >= count) done();
  };
  // the node may forward messages as soon as it has answered interconnect, in the same
  // read as its answer (over TCP): they run onMessage before the awaited call returns,
  // so they are held until the line "interconnected" is out
  let early = [];
  // the library renews the session every ttl/3 s, so a quiet interconnection stays open;
  // a renewal that finds the session or the node gone ends the link (said below, once),
  // one the node was slow to answer is only tried again (said here)
  const onError = (error, message) => {
    if (message !== null) console.error(`berrymq-js: printing ${message.id} failed: ${error && error.message}`);
    else if (!link.closed) console.error(`berrymq-js: renewing the session failed, tried again: ${error.message}`);
  };
  const link = await berrymq.interconnect(url, (message) => {
    if (early !== null) early.push(message); else show(message);
  }, { ttl, onAsk: (message) => `node saw ${message.id}`, onError });
  say('interconnected');
  for (const message of early) show(message);
  early = null;
  try {
    await link.sendMessage('node:joined', ['interconnect']);
    const reason = await Promise.race([finished, stopSignal(), link.ended]);
    if (reason instanceof Error) throw new berrymq.BerryMQError(`the interconnection ended: ${reason.message}`, null);
  } finally {
    await link.close().catch(() => {}); // (the renewals stop with it)
  }
}

async function selftest(url) {
  const channel = await berrymq.connect(url);
  const expectError = async (what, promise, code) => {
    const error = await promise.then(() => null, (e) => e);
    if (error === null || error.code !== code) {
      throw new berrymq.BerryMQError(`${what}: expected error ${code}, got ${error ? error.message : 'a result'}`);
    }
    say(`error ${what}: ${error.code} ${error.message.split(' (')[0]}`);
  };
  const queue = await berrymq.connectViaQueue(url, 'node:*', { ttl: 60 });
  const oneway = await berrymq.connectOneway(url, { ttl: 60 });
  say(`tokens: ${queue.token.length} and ${oneway.token.length} characters`);
  say(`send_message: ${await oneway.sendMessage('node:hello', ['from node', 1], { lang: 'js' })}`);
  await oneway.postMessage('node:note', [2]);
  say(`send_messages: ${await oneway.sendMessages([['node:batch', [3], {}], ['node:batch', [4], {}]])}`);
  for (let i = 0; i < 4; i += 1) say(`got ${format(await queue.get({ timeout: 5 }))}`);
  await expectError('get_nowait', queue.getNowait(), berrymq.codes.EMPTY);
  const replies = await channel.batch([
    { method: 'send_message', params: { token: oneway.token, identifier: 'node:in_batch', args: [5] } },
    { method: 'send_message', params: { token: oneway.token, identifier: 'node:in_batch', args: [6] }, notify: true },
    { method: 'get_nowait', params: { token: queue.token } },
  ]);
  say(`batch: ${replies.length} replies: ${replies.map((r) => JSON.stringify(r.result)).join(' ')}`);
  await expectError('unknown method', channel.call('no_such_method', {}), berrymq.codes.METHOD_NOT_FOUND);
  await expectError('local name', oneway.sendMessage('_secret:x'), berrymq.codes.INVALID_PARAMS);
  await expectError('malformed token', channel.call('get_nowait', { token: 'not-a-token' }), berrymq.codes.BAD_TOKEN);
  await expectError('no queue', oneway.getNowait(), berrymq.codes.NO_QUEUE);
  await queue.close();
  say('close_connection: ok');
  await expectError('closed token', channel.call('get_nowait', { token: queue.token }), berrymq.codes.UNKNOWN_TOKEN);
  await oneway.close();
  await channel.close();
  say('selftest passed');
}

async function main(argv) {
  if (argv.includes('--help') || argv.includes('-h')) return say(USAGE);
  if (argv[0] === '--version') return say(`berrymq-js ${version}`);
  checkUtf8(argv);
  const { words, options } = parseArgs(argv, { values: ['--count', '--kw', '--timeout', '--ttl'], flags: ['--json'] });
  const [verb, url, ...rest] = words;
  const count = number(options, '--count', null, { integer: true, least: 1 });
  const allowed = { send: ['--kw'], ask: ['--kw', '--timeout'], listen: ['--count', '--json'], interconnect: ['--count', '--ttl'], selftest: [] };
  if (!(verb in allowed)) throw new UsageError(verb === undefined ? 'a VERB is required' : `unknown verb ${JSON.stringify(verb)}`);
  const wrong = Object.keys(options).find((name) => !allowed[verb].includes(name));
  if (wrong) throw new UsageError(`${verb} does not take ${wrong}`);
  if (url === undefined) throw new UsageError(`${verb} needs a URL`);
  checkUrl(url);
  const arity = { send: [1, Infinity], ask: [1, Infinity], listen: [1, 1], interconnect: [0, 0], selftest: [0, 0] }[verb];
  if (rest.length < arity[0] || rest.length > arity[1]) {
    throw new UsageError(rest.length < arity[0] ? `${verb} needs ${verb === 'listen' ? 'a PATTERN' : 'an ID'}` :
      `${verb} takes no more arguments (got ${JSON.stringify(rest.slice(arity[1]))})`);
  }
  if (verb === 'send') return send(url, rest[0], rest.slice(1).map(parseValue), kwargsOf(options));
  if (verb === 'ask') return ask(url, rest[0], rest.slice(1).map(parseValue), kwargsOf(options), number(options, '--timeout', 5));
  if (verb === 'listen') return listen(url, rest[0], count, options['--json'] === true);
  if (verb === 'interconnect') return interconnect(url, count, number(options, '--ttl', 60));
  return selftest(url);
}

/** Why a refusal that names a limit is not tried again: the same request would be
 * refused the same way (too large), or until the node has room, which the command does
 * not wait for (a cap, a full queue). Empty for other errors. */
function refusalHint(error) {
  const limit = error.data !== null && typeof error.data === 'object' ? error.data.limit : undefined;
  if (error.code === berrymq.codes.TOO_LARGE) {
    return '; not sent again: it would be refused the same, whenever it came (send less)';
  }
  if ((error.code === berrymq.codes.LIMIT_REACHED || error.code === berrymq.codes.QUEUE_FULL) && limit !== undefined) {
    return '; not sent again: run the command again once the node has room';
  }
  return '';
}

main(process.argv.slice(2)).then(() => {
  process.exitCode = 0;
}, (error) => {
  // Invalid params: what the command line gave (an identifier, say) is wrong, as the
  // Python command finds before it connects.
  const usage = error instanceof UsageError || error.code === berrymq.codes.INVALID_PARAMS;
  const hint = usage ? ' (see berrymq-js --help)' : refusalHint(error); // (Unauthorised says why)
  console.error(`berrymq-js: error: ${error.message}${hint}`);
  process.exitCode = usage ? 2 : 1;
});
