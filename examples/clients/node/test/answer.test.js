'use strict';
/** How an interconnected client answers the requests a node sends it: tolerant of what a
 * node may send (send_message or send_messages, JSON-RPC 2.0 or 1.0, params by name or by
 * position, extras it does not know), strict about the token. First the answering itself,
 * then over a real socket: the HTTP server interconnect starts, called by a real node and
 * by a hand-written request. */

const assert = require('assert/strict');
const http = require('http');
const { describe, it } = require('node:test');
const berrymq = require('..');
const { Answerer } = require('../lib/answerer');
const { DEADLINE, Inbox, startNode } = require('./helpers');

const TOKEN = 'client-token';

function answerer({ onAsk = null } = {}) {
  const got = [];
  const extras = [];
  const errors = [];
  const onMessage = (message) => {
    if (message.id === 'boom:now') throw new Error('receiver failed');
    got.push([message.id, message.args, message.kwargs]);
    extras.push(message.extras);
  };
  return { got, extras, errors, answerer: new Answerer(TOKEN, onMessage, onAsk, (error, m) => errors.push([error.message, m.id])) };
}

describe('answering a node', () => {
  it('send_messages, with extras known and unknown', async () => {
    const { got, answerer: a } = answerer();
    const reply = await a.answer({ jsonrpc: '2.0', method: 'send_messages', id: 1, params: {
      token: TOKEN, secret: 'sent by a node with a secret',
      messages: [['a:b', [1], {}, { uid: 'n-1', hops: 1, future: true }], ['a:c', [], { k: 'v' }]] } });
    assert.deepEqual(reply, { jsonrpc: '2.0', result: 'ok', id: 1 });
    assert.deepEqual(got, [['a:b', [1], {}], ['a:c', [], { k: 'v' }]]);
  });

  it('send_message one at a time, by name or by position', async () => {
    const { got, extras, answerer: a } = answerer();
    assert.deepEqual(await a.answer({ jsonrpc: '2.0', method: 'send_message', id: 2, params: {
      token: TOKEN, identifier: 'a:b', args: [1], kwargs: { x: 1 }, uid: 'n-2', hops: 3, reply_to: 'r:s', other: 1,
      secret: 'not an extra' } }),
    { jsonrpc: '2.0', result: 'ok', id: 2 });
    assert.deepEqual(await a.answer({ jsonrpc: '2.0', method: 'send_message', id: 3, params: [TOKEN, 'a:c', [2], {}] }),
      { jsonrpc: '2.0', result: 'ok', id: 3 });
    assert.equal(await a.answer({ jsonrpc: '2.0', method: 'send_message', params: { token: TOKEN, identifier: 'a:d' } }), null);
    assert.deepEqual(got, [['a:b', [1], { x: 1 }], ['a:c', [2], {}], ['a:d', [], {}]]);
    assert.deepEqual(extras, [{ uid: 'n-2', hops: 3, reply_to: 'r:s' }, {}, {}]);
  });

  it('a JSON-RPC 1.0 request (no "jsonrpc") is answered in 1.0 form', async () => {
    const { got, answerer: a } = answerer();
    assert.deepEqual(await a.answer({ method: 'send_message', params: [TOKEN, 'old:style', [1], {}], id: 7 }),
      { result: 'ok', error: null, id: 7 });
    assert.deepEqual(await a.answer({ method: 'send_message', params: ['wrong', 'old:style', [], {}], id: 8 }),
      { result: null, error: { code: -32001, message: 'Unknown or expired token' }, id: 8 });
    // "id": null is answered, as a node answers it (the original's client sends every
    // call so); a request with no id is the notification
    assert.deepEqual(await a.answer({ method: 'send_message', params: [TOKEN, 'old:call', [], {}], id: null }),
      { result: 'ok', error: null, id: null });
    assert.equal(await a.answer({ method: 'send_message', params: [TOKEN, 'old:note', [], {}] }), null);
    assert.deepEqual(got, [['old:style', [1], {}], ['old:call', [], {}], ['old:note', [], {}]]);
  });

  it('refuses a wrong token, an unknown method, a malformed message, a non-request', async () => {
    const { got, answerer: a } = answerer();
    assert.deepEqual(await a.answer({ jsonrpc: '2.0', method: 'send_messages', id: 1, params: { token: 'x', messages: [['a:b', [], {}]] } }),
      { jsonrpc: '2.0', error: { code: -32001, message: 'Unknown or expired token' }, id: 1 });
    assert.deepEqual(await a.answer({ jsonrpc: '2.0', method: 'get', id: 2, params: { token: TOKEN } }),
      { jsonrpc: '2.0', error: { code: -32601, message: 'Method not found', data: 'get' }, id: 2 });
    const bad = await a.answer({ jsonrpc: '2.0', method: 'send_messages', id: 3,
      params: { token: TOKEN, messages: [['a:b', [], {}], ['a:c', 'not an array', {}]] } });
    assert.equal(bad.error.code, -32602);
    assert.deepEqual(got, [], 'a malformed element refuses the whole request');
    const invalid = (data) => ({ jsonrpc: '2.0', error: { code: -32600, message: 'Invalid Request', data }, id: null });
    assert.deepEqual(await a.answer(7), invalid('a request is a JSON object (a batch is an array of them, not nested)'));
    assert.deepEqual(await a.answerBody([]), invalid('an empty batch: send at least one request'));
  });

  it("an Invalid Request's data names the broken rule, in the node's words", async () => {
    const { got, answerer: a } = answerer();
    const invalid = (data) => ({ jsonrpc: '2.0', error: { code: -32600, message: 'Invalid Request', data }, id: null });
    const params = { token: TOKEN, identifier: 'a:b' };
    const cases = [
      [{ jsonrpc: '1.0', method: 'send_message', params, id: 1 },
        'the jsonrpc member must be the string 2.0, or be absent in a JSON-RPC 1.0 request (which a batch cannot hold)'],
      [{ jsonrpc: '2.0', method: 7, params, id: 2 }, 'the method member must be a string'],
      [{ jsonrpc: '2.0', method: 'send_message', params: 'x', id: 3 }, 'the params member must be an array or an object'],
      [{ jsonrpc: '2.0', method: 'send_message', params: null, id: 4 }, 'the params member must be an array or an object'],
      [{ jsonrpc: '2.0', method: 'send_message', params, id: true }, 'the id member must be a string, a number or null'],
      [{ jsonrpc: '2.0', method: 'send_message', params, id: 5, extra: 1 },
        'a request has no members but jsonrpc, method, params and id'],
      [[1, 2], 'a request is a JSON object (a batch is an array of them, not nested)'],
    ];
    for (const [request, data] of cases) assert.deepEqual(await a.answer(request), invalid(data), JSON.stringify(request));
    // in a batch: each bad member its own, a 1.0 member among them; the good one runs
    assert.deepEqual(await a.answerBody([
      { method: 'send_message', params: [TOKEN, 'old:style', [], {}], id: 6 },
      [{ jsonrpc: '2.0', method: 'send_message', params, id: 7 }],
      { jsonrpc: '2.0', method: 'send_message', params: { token: TOKEN, identifier: 'in:batch' }, id: 8 },
    ]), [
      invalid('the jsonrpc member must be the string 2.0, or be absent in a JSON-RPC 1.0 request (which a batch cannot hold)'),
      invalid('a request is a JSON object (a batch is an array of them, not nested)'),
      { jsonrpc: '2.0', result: 'ok', id: 8 },
    ]);
    assert.deepEqual(got, [['in:batch', [], {}]]);
  });

  it('delivers a uid once, and a receiver that throws is reported, not fatal', async () => {
    const { got, errors, answerer: a } = answerer();
    const request = (id) => ({ jsonrpc: '2.0', method: 'send_messages', id,
      params: { token: TOKEN, messages: [['a:b', [], {}, { uid: 'n-9' }], ['boom:now', [], {}]] } });
    assert.equal((await a.answer(request(1))).result, 'ok');
    assert.equal((await a.answer(request(2))).result, 'ok');
    assert.deepEqual(got, [['a:b', [], {}]]);
    assert.deepEqual(errors, [['receiver failed', 'boom:now'], ['receiver failed', 'boom:now']]);
  });

  it('an async onMessage that rejects reaches onError, as one that throws does', async () => {
    const errors = new Inbox('onError');
    const a = new Answerer(TOKEN, async (m) => {
      await null;
      if (m.id === 'boom:later') throw new Error(`failed later: ${m.args[0]}`);
    }, null, (error, m) => errors.put([error.message, m.id]));
    const reply = await a.answer({ jsonrpc: '2.0', method: 'send_messages', id: 1,
      params: { token: TOKEN, messages: [['boom:later', [1], {}], ['fine:now', [], {}], ['boom:later', [2], {}]] } });
    assert.equal(reply.result, 'ok');
    assert.deepEqual(await errors.next(), ['failed later: 1', 'boom:later']);
    assert.deepEqual(await errors.next(), ['failed later: 2', 'boom:later']);
    // an onError that throws in turn is printed, not thrown on
    const b = new Answerer(TOKEN, () => Promise.reject(new Error('x')), null, () => { throw new Error('onError too'); });
    const printed = new Promise((resolve) => {
      const original = console.error;
      console.error = (text) => { console.error = original; resolve(text); };
    });
    assert.equal((await b.answer({ jsonrpc: '2.0', method: 'send_message', id: 2,
      params: { token: TOKEN, identifier: 'boom:twice' } })).result, 'ok');
    assert.match(await printed, /^berrymq: onError failed for boom:twice: Error: onError too/);
  });

  it('ask: a value, no receiver, a failure', async () => {
    const { answerer: a } = answerer({ onAsk: async (m) => {
      if (m.id === 'fail:now') throw new RangeError('no');
      return m.id === 'q:a' ? m.args[0] * 2 : undefined;
    } });
    const ask = async (identifier, token) => (await a.answer({ jsonrpc: '2.0', method: 'ask', id: 1,
      params: { identifier, args: [21], kwargs: {}, timeout: 5, ...(token ? { token } : {}) } }));
    assert.deepEqual((await ask('q:a', TOKEN)).result, [{ value: 42 }]);
    // the node sends our token with its asks too: one without it is refused, unanswered
    assert.deepEqual((await ask('q:a')).error, { code: -32001, message: 'Unknown or expired token' });
    assert.deepEqual((await ask('q:other', TOKEN)).result, []);
    assert.deepEqual((await ask('fail:now', TOKEN)).result,
      [{ error: { type: 'RangeError', message: 'no', receiver: 'onAsk', node: 'node.js' } }]);
    assert.equal((await ask('q:a', 'wrong')).error.code, -32001);
  });
});

/** POST `body` to 127.0.0.1:`port` with `headers`; resolves with [status, text]. */
function post(port, body, headers) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', agent: false,
      headers: { 'Content-Length': Buffer.byteLength(body), ...headers } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; }).on('end', () => resolve([res.statusCode, text]));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('the HTTP server of interconnect', { timeout: 3 * DEADLINE }, () => {
  it("runs the node's asks, and no one else's: a web page's request, a wrong Host, another media type, no token", async () => {
    const node = await startNode();
    let link = null;
    try {
      const inbox = new Inbox('messages to the client');
      const asked = [];
      link = await berrymq.interconnect(node.http, (m) => inbox.put(m),
        { ttl: 60, onAsk: (m) => { asked.push(m.args[0]); return `seen ${m.args[0]}`; } });
      const { port } = link.channel.server.address();
      const token = link.channel.answerer.token;
      const ask = (who, withToken = true) => JSON.stringify({ jsonrpc: '2.0', method: 'ask', id: 1,
        params: { identifier: 'cb:web', args: [who], ...(withToken ? { token } : {}) } });
      const json = { 'Content-Type': 'application/json' };
      // the tester's request: a web page's, with neither token nor JSON
      const [status] = await post(port, ask('web page', false),
        { 'Content-Type': 'text/plain', Origin: 'http://evil.example', Host: 'evil.example' });
      assert.equal(status, 403);
      // each check alone, the token given
      assert.deepEqual(await post(port, ask('origin'), { ...json, Origin: 'http://evil.example' }),
        [403, 'this server takes JSON-RPC requests from a berryMQ node, not from web pages (Origin)\n']);
      const [misnamed, why] = await post(port, ask('host'), { ...json, Host: `evil.example:${port}` });
      assert.deepEqual([misnamed, /Host name/.test(why)], [421, true]);
      const [typed, said] = await post(port, ask('type'), { 'Content-Type': 'text/plain' });
      assert.deepEqual([typed, /application\/json/.test(said)], [415, true]);
      const [unsigned, refusal] = await post(port, ask('no token', false), json);
      assert.deepEqual([unsigned, JSON.parse(refusal).error.code], [200, -32001]);
      assert.deepEqual(asked, [], 'onAsk ran for a refused request');
      // what the node sends: its Host (our address), JSON, our token
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`]) {
        const [ok, answer] = await post(port, ask(host), { ...json, Host: host });
        assert.deepEqual([ok, JSON.parse(answer).result], [200, [{ value: `seen ${host}` }]]);
      }
      // and the node itself is still answered: it asks us (relay:ask) and twitters the replies
      const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
      await sender.sendMessage('relay:ask', ['cb:node', 'from python']);
      let answer;
      do answer = await inbox.next(); while (answer.id !== 'relay:answer');
      assert.deepEqual(answer.args, [['seen from python']]);
      await sender.close();
    } finally {
      if (link !== null) await link.close();
      await node.stop();
    }
  });


  it('listens on loopback with { port: 0 } alone; a port taken is a BerryMQError naming the address', async () => {
    const node = await startNode();
    const taken = http.createServer();
    try {
      const link = await berrymq.interconnect(node.http, () => {}, { ttl: 60, listen: { port: 0 } });
      assert.equal(link.channel.server.address().address, '127.0.0.1');
      await link.close();
      await new Promise((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const { port } = taken.address();
      await assert.rejects(berrymq.interconnect(node.http, () => {}, { ttl: 60, listen: { host: '127.0.0.1', port } }),
        (error) => error instanceof berrymq.BerryMQError && error.code === null && error.message ===
          `cannot listen on http://127.0.0.1:${port} for the node's calls (the listen option of interconnect): EADDRINUSE`);
      assert.equal(berrymq.connections.length, 0);
    } finally {
      taken.close();
      await node.stop();
    }
  });

  it('is called back by the node and answers a hand-written 1.0 request too', async () => {
    const node = await startNode();
    try {
      const inbox = new Inbox('messages to the client');
      const link = await berrymq.interconnect(node.http, (m) => inbox.put(m), { ttl: 60 });
      const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
      await sender.sendMessage('news:one', [1]);
      assert.equal((await inbox.next()).id, 'news:one');
      // a peer of berryMQ 0.3's age: JSON-RPC 1.0, positional params, another path and type
      const { port } = link.channel.server.address();
      const token = link.channel.answerer.token; // the token we gave the node
      const body = JSON.stringify({ method: 'send_message', params: [token, 'old:peer', ['hi'], {}], id: 'x' });
      const reply = await new Promise((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/JSON',
          headers: { 'Content-Type': 'application/json-rpc', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
          let text = '';
          res.on('data', (d) => { text += d; }).on('end', () => resolve([res.statusCode, JSON.parse(text)]));
        });
        req.on('error', reject);
        req.end(body);
      });
      assert.deepEqual(reply, [200, { result: 'ok', error: null, id: 'x' }]);
      assert.deepEqual(await inbox.next(), { id: 'old:peer', args: ['hi'], kwargs: {}, extras: {} });
      await sender.close();
      await link.close();
    } finally {
      await node.stop();
    }
  });
});

/** An array nested `levels` deep. */
function nest(levels) {
  let value = [];
  for (let i = 1; i < levels; i += 1) value = [value];
  return value;
}

describe('onAsk replies, answered without a node', () => {
  it('a reply nested 124 levels deep is the deepest that goes as a value', async () => {
    const { answerer: a } = answerer({ onAsk: (m) => nest(m.args[0]) });
    const ask = async (levels) => (await a.answer({ jsonrpc: '2.0', method: 'ask', id: 1,
      params: { identifier: 'q:a', args: [levels], token: TOKEN } })).result[0];
    assert.deepEqual(await ask(124), { value: nest(124) });
    assert.equal((await ask(125)).error.message, 'the reply is nested more than 124 levels deep, the limit');
  });

  it('an onAsk that throws something other than an Error is an entry, not a failure of the answer', async () => {
    const { answerer: a } = answerer({ onAsk: () => { throw null; } });
    const reply = await a.answer({ jsonrpc: '2.0', method: 'ask', id: 1, params: { identifier: 'q:a', token: TOKEN } });
    assert.deepEqual(reply.result, [{ error: { type: 'Error', message: 'null', receiver: 'onAsk', node: 'node.js' } }]);
  });
});
