#!/usr/bin/env node
'use strict';
/**
 * A small command line over berrymq.js, the same verbs as the Python `berrymq` command:
 *
 *   node cli.js send URL ID [ARGS...]         send one message (ARGS parsed as JSON when valid)
 *   node cli.js listen URL PATTERN [--count N]  print messages matching PATTERN (style 03)
 *   node cli.js interconnect URL [--count N]  print every message the node forwards (style 01),
 *                                             after a line "interconnected"; answers asks
 *   node cli.js selftest URL                  exercise every method, print what happens
 *
 * Start a node first:  berrymq serve --tcp 127.0.0.1:7000 --http 127.0.0.1:8000
 */

const { connect, codes, BerryMQError } = require('./berrymq');

function parseValue(text) {
  try {
    return JSON.parse(text);
  } catch (error) {
    return text;
  }
}

function format(message) {
  let line = `${message.identifier} ${JSON.stringify(message.args)}`;
  if (Object.keys(message.kwargs).length) line += ` ${JSON.stringify(message.kwargs)}`;
  return line;
}

function option(args, name, fallback) {
  const index = args.indexOf(name);
  if (index < 0) return fallback;
  const value = Number(args[index + 1]);
  args.splice(index, 2);
  return value;
}

async function send(url, identifier, args) {
  const client = await connect(url);
  try {
    const token = await client.connectOneway(60);
    await client.sendMessage(token, identifier, args.map(parseValue), {});
    await client.closeConnection(token);
  } finally {
    client.close();
  }
}

async function listen(url, pattern, count) {
  const client = await connect(url);
  const token = await client.connectViaQueue(pattern, 60);
  console.error(`listening to ${pattern} at ${url}`);
  for (let seen = 0; count === null || seen < count;) {
    const message = await client.get(token, { timeout: 30 });
    if (message === null) continue; // the node caps a wait; ask again
    process.stdout.write(format(message) + '\n');
    seen += 1;
  }
  await client.closeConnection(token);
  client.close();
}

async function interconnect(url, count) {
  const client = await connect(url);
  let seen = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const token = await client.interconnect((message) => {
    process.stdout.write(format(message) + '\n');
    seen += 1;
    if (count !== null && seen >= count) done();
  }, 60, (message) => [`node saw ${message.identifier}`]);
  process.stdout.write('interconnected\n');
  // our own messages travel on the same connection, with the token the node gave us
  await client.sendMessage(token, 'node:joined', ['interconnect'], {});
  await finished;
  await client.closeConnection(token);
  client.close();
}

async function selftest(url) {
  const client = await connect(url);
  const say = (text) => process.stdout.write(text + '\n');
  const expectError = async (what, promise, code) => {
    try {
      await promise;
    } catch (error) {
      if (error.code !== code) throw new BerryMQError(`${what}: expected error ${code}, got ${error.message}`);
      say(`error ${what}: ${error.code} ${error.message.split(' (')[0]}`);
      return;
    }
    throw new BerryMQError(`${what}: expected error ${code}, got a result`);
  };

  const queueToken = await client.connectViaQueue('node:*', 60);
  const token = await client.connectOneway(60);
  say(`tokens: ${queueToken.length} and ${token.length} characters`);
  say(`send_message: ${await client.sendMessage(token, 'node:hello', ['from node', 1], { lang: 'js' })}`);
  await client.postMessage(token, 'node:note', [2]);
  say(`send_messages: ${await client.sendMessages(token, [['node:batch', [3], {}], ['node:batch', [4], {}]])}`);
  for (let i = 0; i < 4; i += 1) {
    const message = await client.get(queueToken, { timeout: 5 });
    say(`got ${message === null ? 'nothing' : format(message)}`);
  }
  say(`get_nowait: ${await client.getNowait(queueToken)}`);

  const replies = await client.batch([
    { method: 'send_message', params: { token, identifier: 'node:in_batch', args: [5] } },
    { method: 'send_message', params: { token, identifier: 'node:in_batch', args: [6] }, notify: true },
    { method: 'get_nowait', params: { token: queueToken } },
  ]);
  say(`batch: ${replies.length} replies: ${replies.map((r) => JSON.stringify(r.result)).join(' ')}`);

  await expectError('unknown method', client.call('no_such_method', {}), codes.METHOD_NOT_FOUND);
  await expectError('local name', client.sendMessage(token, '_secret:x'), codes.INVALID_PARAMS);
  await expectError('malformed token', client.getNowait('not-a-token'), codes.BAD_TOKEN);
  await expectError('no queue', client.getNowait(token), codes.NO_QUEUE);
  say(`close_connection: ${await client.closeConnection(queueToken)}`);
  await expectError('closed token', client.getNowait(queueToken), codes.UNKNOWN_TOKEN);
  await client.closeConnection(token);
  client.close();
  say('selftest passed');
}

async function main(argv) {
  const args = argv.slice();
  const count = option(args, '--count', null);
  const [verb, url, ...rest] = args;
  if (verb === 'send' && url && rest.length >= 1) return send(url, rest[0], rest.slice(1));
  if (verb === 'listen' && url && rest.length === 1) return listen(url, rest[0], count);
  if (verb === 'interconnect' && url) return interconnect(url, count);
  if (verb === 'selftest' && url) return selftest(url);
  console.error('usage: node cli.js send URL ID [ARGS...] | listen URL PATTERN [--count N] | ' +
                'interconnect URL [--count N] | selftest URL');
  process.exitCode = 2;
  return undefined;
}

main(process.argv.slice(2)).catch((error) => {
  console.error(`berrymq.js: error: ${error.message}`);
  process.exitCode = 1;
});
