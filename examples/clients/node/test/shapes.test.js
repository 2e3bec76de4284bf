'use strict';
/** Answers of the wrong shape, which no node gives, against fake nodes: a get result that
 * is not [identifier, args, kwargs], ask replies that are not { value } or { error }, a
 * send_message result that is not "ok", an error that is not an error object, an HTTP
 * answer without JSON: each a TransportError naming the node and quoting what it
 * answered, and the connection goes on. And what a node sends a connection that serves no
 * methods (oneway, queue) over TCP: answered by a node's rules, a response never. */

const assert = require('assert/strict');
const { after, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, Inbox, fakeHttpNode, fakeTcpNode } = require('./helpers');

const { codes } = berrymq;

/** A fake node over `scheme` answering each request with `script[method](request)`: a
 * reply's members (`{ result }`, `{ error }`), its id added. */
async function scriptedNode(scheme, script) {
  const reply = (request) => ({ jsonrpc: '2.0', ...script[request.method](request), id: request.id });
  if (scheme === 'tcp') {
    return fakeTcpNode((request, socket) => socket.write(`${JSON.stringify(reply(request))}\n`));
  }
  return fakeHttpNode((request, res) => {
    const out = Buffer.from(JSON.stringify(reply(request)));
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': out.length }).end(out);
  });
}

/** Whether `error` is a TransportError (not a ConnectionClosed) whose message begins with
 * `start` and holds each of `parts`. */
function transportError(start, ...parts) {
  return (error) => {
    assert.ok(error instanceof berrymq.TransportError && !(error instanceof berrymq.ConnectionClosed), String(error));
    assert.ok(error.message.startsWith(start), error.message);
    for (const part of parts) assert.ok(error.message.includes(part), `${error.message} has no ${part}`);
    return true;
  };
}

for (const scheme of ['tcp', 'http']) {
  describe(`answers of the wrong shape, over ${scheme}`, { timeout: 4 * DEADLINE }, () => {
    const fakes = [];
    after(async () => {
      await berrymq.closeConnection().catch(() => {});
      await Promise.all(fakes.map((fake) => fake.stop()));
    });

    it('a get or get_nowait result that is not [identifier, args, kwargs]: TransportError naming the node and the method', async () => {
      let result;
      const fake = await scriptedNode(scheme, { get: () => ({ result }), get_nowait: () => ({ result }) });
      fakes.push(fake);
      const queue = await berrymq.connectViaQueue(fake.url, 'job:*', { ttl: 60, timeout: DEADLINE });
      for (const bad of [42, null, 'job:x', ['job:x'], ['job:x', 'args', {}], ['job:x', [], []], [1, [], {}], { id: 'job:x' }]) {
        result = bad;
        const shown = JSON.stringify(bad);
        await assert.rejects(queue.getNowait(), transportError(`${fake.url} answered get_nowait with ${shown}, not a message`));
        await assert.rejects(queue.get({ timeout: 1 }), transportError(`${fake.url} answered get with ${shown}, not a message`));
      }
      result = ['job:x', [1], { k: 2 }];
      assert.deepEqual(await queue.getNowait(), { id: 'job:x', args: [1], kwargs: { k: 2 }, extras: {} });
      assert.deepEqual(await queue.get({ timeout: 1 }), { id: 'job:x', args: [1], kwargs: { k: 2 }, extras: {} });
      assert.equal(queue.closed, false);
    });

    it('ask replies that are not { value } or { error }: TransportError quoting the entry', async () => {
      let result;
      const fake = await scriptedNode(scheme, { ask: () => ({ result }) });
      fakes.push(fake);
      const oneway = await berrymq.connectOneway(fake.url, { ttl: 60, timeout: DEADLINE });
      for (const [bad, shown] of [[[{ value: 1 }, 5], '5'], [[null], 'null'], [['x'], '"x"'], [[{}], '{}'],
        [[[1]], '[1]'], [[{ error: 'boom' }], '{"error":"boom"}'], [[{ error: null }], '{"error":null}']]) {
        result = bad;
        await assert.rejects(oneway.ask('price:quote', [1]),
          transportError(`${fake.url} answered ask with a malformed reply ${shown}, not { value } or { error }`));
      }
      for (const bad of [{}, 'ok', null]) {
        result = bad;
        await assert.rejects(oneway.ask('price:quote', [1]),
          transportError(`${fake.url} answered ask with ${JSON.stringify(bad)}, not an array of replies`));
      }
      result = [{ value: 1 }, { value: null }, { error: { type: 'ValueError', message: 'no', receiver: 'r', node: 'n' } }];
      const [one, nothing, failed] = await oneway.ask('price:quote', [1]);
      assert.equal(one, 1);
      assert.equal(nothing, null);
      assert.ok(failed instanceof berrymq.ReplyError && failed.type === 'ValueError', String(failed));
    });

    it('a send_message or send_messages result other than "ok": TransportError quoting it', async () => {
      let result;
      const fake = await scriptedNode(scheme, { send_message: () => ({ result }), send_messages: () => ({ result }) });
      fakes.push(fake);
      const oneway = await berrymq.connectOneway(fake.url, { ttl: 60, timeout: DEADLINE });
      for (const bad of ['OK', null, 42, { ok: true }, ['ok']]) {
        result = bad;
        const shown = JSON.stringify(bad);
        await assert.rejects(oneway.sendMessage('job:x', [1]),
          transportError(`${fake.url} answered send_message with ${shown}, not "ok"`));
        await assert.rejects(oneway.sendMessages([['job:x', [1], {}]]),
          transportError(`${fake.url} answered send_messages with ${shown}, not "ok"`));
      }
      result = 'ok';
      assert.equal(await oneway.sendMessage('job:x', [1]), 'ok');
      assert.equal(await oneway.sendMessages([['job:x', [1], {}]]), 'ok');
    });

    it('an error that is not an object with an integer code and a string message: TransportError quoting the reply', async () => {
      let error;
      const fake = await scriptedNode(scheme, { get_nowait: () => ({ error }) });
      fakes.push(fake);
      const queue = await berrymq.connectViaQueue(fake.url, 'job:*', { ttl: 60, timeout: DEADLINE });
      for (const bad of ['the queue is on fire', 42, ['boom'], { code: 'E42', message: 'string code' },
        { code: -32000.5, message: 'fractional code' }, { code: -32000 }, { code: -32000, message: 7 }, { message: 'no code' }]) {
        error = bad;
        await assert.rejects(queue.getNowait(), transportError(
          `${fake.url} answered an error that is not a JSON-RPC error object (an integer code and a string message): `,
          JSON.stringify(bad)));
      }
      // an error object is the node's error, as before
      error = { code: codes.INVALID_PARAMS, message: 'Invalid params', data: 'bad identifier' };
      await assert.rejects(queue.getNowait(), (e) => !(e instanceof berrymq.TransportError) &&
        e instanceof berrymq.BerryMQError && e.code === codes.INVALID_PARAMS && e.message === 'Invalid params (-32602): bad identifier');
      error = { code: codes.EMPTY, message: 'Queue is empty' };
      await assert.rejects(queue.getNowait(), berrymq.Empty);
    });
  });
}

describe('an HTTP answer without JSON', { timeout: 4 * DEADLINE }, () => {
  it('a 200 or a 500 that is not JSON: TransportError naming the status and quoting the body; the connection goes on', async () => {
    let status = 200;
    const fake = await fakeHttpNode((request, res) => {
      if (request.params.identifier === 'job:fine') {
        const out = Buffer.from(JSON.stringify({ jsonrpc: '2.0', result: 'ok', id: request.id }));
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': out.length }).end(out);
        return;
      }
      res.writeHead(status, { 'Content-Type': 'text/plain' }).end('hello, this is not JSON\n');
    });
    try {
      const oneway = await berrymq.connectOneway(fake.url, { ttl: 60, timeout: DEADLINE });
      for (status of [200, 500]) {
        await assert.rejects(oneway.sendMessage('job:x'),
          transportError(`${fake.url} answered HTTP ${status} without JSON: hello, this is not JSON`));
      }
      assert.equal(await oneway.sendMessage('job:fine'), 'ok');
      await oneway.close();
    } finally {
      await fake.stop();
    }
  });
});

describe('what a node sends a TCP connection that serves no methods', { timeout: 4 * DEADLINE }, () => {
  it("is answered by a node's rules, as a Python client answers it: Invalid Request for what is not a request, " +
     'Method not found for a request, nothing for a notification or a response', async () => {
    const answers = new Inbox('what the client answered');
    const fake = await fakeTcpNode((answer) => answers.put(answer));
    try {
      const oneway = await berrymq.connectOneway(fake.url, { ttl: 60, timeout: DEADLINE });
      const [socket] = fake.sockets; // the connection of connect_oneway, the only one
      const send = (...lines) => socket.write(lines.map((line) => `${line}\n`).join(''));
      const notRequest = (data) => ({ jsonrpc: '2.0', error: { code: codes.INVALID_REQUEST, message: 'Invalid Request', data },
        id: null });
      const notObject = notRequest('a request is a JSON object (a batch is an array of them, not nested)');
      const notFound = (method, id) => ({ jsonrpc: '2.0', error: { code: codes.METHOD_NOT_FOUND, message: 'Method not found',
        data: method }, id });
      send('[1,2,3]', '42', 'null', '"x"', '[]',
        '{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid Request"},"id":null}', // an error response
        '{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found"},"id":99}',
        '{"jsonrpc":"2.0","result":"ok","id":98}', // a response to nothing of ours
        '{"jsonrpc":"2.0","method":"foo"}', // a notification
        '{"jsonrpc":"2.0","method":"foo","id":7}',
        '{"jsonrpc":"2.0","method":"end","id":"end"}');
      const got = [];
      for (;;) {
        const answer = await answers.next();
        got.push(answer);
        if (answer && answer.id === 'end') break;
      }
      assert.deepEqual(got, [[notObject, notObject, notObject], notObject, notObject, notObject,
        notRequest('an empty batch: send at least one request'), notFound('foo', 7), notFound('end', 'end')]);
      // what it answered, sent back to it, is not answered again: it is all responses
      send(...got.map((answer) => JSON.stringify(answer)), '{"jsonrpc":"2.0","method":"again","id":"again"}');
      assert.deepEqual(await answers.next(), notFound('again', 'again'));
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(answers.values, []);
      // and the connection goes on
      assert.equal(oneway.closed, false);
      await oneway.close();
    } finally {
      await fake.stop();
    }
  });
});
