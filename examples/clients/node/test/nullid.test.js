'use strict';
/** `"id": null`, treated as the Python node treats it (docs/dialects.md): as a server, a
 * request with `"id": null` is answered (with `"id": null`) in JSON-RPC 2.0 and in 1.0
 * alike (1.0 calls it a notification, but the original berryMQ's client sends every call
 * so and waits for the answer); a request with no `id` member is the notification. As a
 * client, a reply with `"id": null` and a result answers no request of ours (the Python
 * client drops it over TCP and refuses it over HTTP); one with an error is the node's
 * error it could not tie to a request, as before. Each case is put to a real Python node
 * and to the client's answering side, and the answers compared. */

const assert = require('assert/strict');
const http = require('http');
const net = require('net');
const readline = require('readline');
const { describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, Inbox, postJson, startNode, withHttpLink } = require('./helpers');

/** Requests with and without an id, null or not, in both versions: each answered the same
 * by the node and the client, or not at all. */
const REQUESTS = [
  { method: 'no_such_method', params: [], id: null },
  { method: 'no_such_method', params: [] },
  { method: 'no_such_method', params: [], id: 7 },
  { jsonrpc: '2.0', method: 'no_such_method', params: {}, id: null },
  { jsonrpc: '2.0', method: 'no_such_method', params: {} },
  { jsonrpc: '2.0', method: 'no_such_method', params: {}, id: 8 },
  { method: 7, id: null }, // invalid: answered, id null, whatever the id, in the request's version
  { method: 7 },
  { jsonrpc: '2.0', method: 7 },
];

/** Write `lines` on a TCP connection to `address`, then a request of id "end"; resolves
 * with the answers read before the answer to it, in order. */
function tcpAnswers(address, lines) {
  const [host, port] = address.replace(/^tcp:\/\//, '').split(':');
  return new Promise((resolve, reject) => {
    const answers = [];
    const socket = net.createConnection({ host, port: Number(port) }, () => {
      socket.write([...lines, JSON.stringify({ jsonrpc: '2.0', method: 'no_such_method', id: 'end' })].join('\n') + '\n');
    });
    socket.on('error', reject);
    readline.createInterface({ input: socket }).on('line', (line) => {
      const answer = JSON.parse(line);
      if (answer.id !== 'end') return answers.push(answer);
      socket.destroy();
      return resolve(answers);
    });
  });
}

describe('"id": null in requests, as a server: as the Python node', { timeout: 4 * DEADLINE }, () => {
  it('over HTTP: the callback server answers each request as the node does', async () => {
    await withHttpLink(async ({ node, link, inbox, callback }) => {
      for (const request of REQUESTS) {
        const fromNode = await postJson(node.http, JSON.stringify(request));
        assert.deepEqual(await postJson(callback, JSON.stringify(request)), fromNode, JSON.stringify(request));
      }
      // and one that runs: a 1.0 send_message with id null is delivered and answered
      const token = link.channel.answerer.token;
      assert.deepEqual(await postJson(callback, JSON.stringify({ method: 'send_message', params: [token, 'v1:null', [1], {}], id: null })),
        [200, { result: 'ok', error: null, id: null }]);
      assert.deepEqual(await inbox.next(), { id: 'v1:null', args: [1], kwargs: {}, extras: {} });
    });
  });

  it('over TCP: the client answers each line as the node does', async () => {
    const node = await startNode();
    const lines = REQUESTS.map((r) => JSON.stringify(r));
    // a peer playing the node: it opens the interconnection, then sends the lines and the
    // request "end", and hands on the client's answers
    const answers = new Inbox('the client\'s answers');
    const sockets = new Set();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      let got = [];
      readline.createInterface({ input: socket }).on('line', (line) => {
        const obj = JSON.parse(line);
        if (obj.method === 'interconnect') {
          socket.write(`${JSON.stringify({ jsonrpc: '2.0', result: 'T'.repeat(43), id: obj.id })}\n`);
          socket.write([...lines, JSON.stringify({ jsonrpc: '2.0', method: 'no_such_method', id: 'end' })].join('\n') + '\n');
        } else if (obj.method === 'close_connection') {
          socket.write(`${JSON.stringify({ jsonrpc: '2.0', result: 'ok', id: obj.id })}\n`);
        } else if (obj.id === 'end') {
          answers.put(got);
          got = [];
        } else {
          got.push(obj);
        }
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    let link = null;
    try {
      const fromNode = await tcpAnswers(node.tcp, lines);
      assert.equal(fromNode.length, 7, JSON.stringify(fromNode));
      link = await berrymq.interconnect(`tcp://127.0.0.1:${server.address().port}`, () => {}, { ttl: 60 });
      assert.deepEqual(await answers.next(), fromNode);
    } finally {
      try {
        if (link !== null) await link.close();
      } finally {
        for (const socket of sockets) socket.destroy();
        server.close();
        await node.stop();
      }
    }
  });
});

describe('"id": null in replies, as a client: as the Python client', { timeout: 2 * DEADLINE }, () => {
  it('over TCP: a result with id null answers none of our calls; an error with id null still does', async () => {
    const sockets = new Set();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      readline.createInterface({ input: socket }).on('line', (line) => {
        const { method, id } = JSON.parse(line);
        const replies = method === 'invalid' ? [{ jsonrpc: '2.0', error: { code: -32600, message: 'Invalid Request' }, id: null }] :
          [{ jsonrpc: '2.0', result: 'not yours', id: null }, { result: 'not yours either', error: null, id: null },
            { jsonrpc: '2.0', result: `yours, ${id}`, id }];
        socket.write(replies.map((r) => `${JSON.stringify(r)}\n`).join(''));
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const channel = await berrymq.connect(`tcp://127.0.0.1:${server.address().port}`);
    try {
      assert.equal(await channel.call('mine'), 'yours, 1');
      assert.equal(await channel.call('mine'), 'yours, 2');
      await assert.rejects(channel.call('invalid'), (error) => error.code === -32600);
    } finally {
      await channel.close();
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });

  it('over HTTP: a result with id null is a TransportError saying whose it is; an error with id null is the error', async () => {
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; }).on('end', () => {
        const { method } = JSON.parse(body);
        const reply = method === 'invalid' ? { jsonrpc: '2.0', error: { code: -32600, message: 'Invalid Request' }, id: null } :
          method === 'v1' ? { result: 'not yours', error: null, id: null } : { jsonrpc: '2.0', result: 'not yours', id: null };
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(reply));
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${server.address().port}`;
    const channel = await berrymq.connect(url);
    try {
      await assert.rejects(channel.call('v2'), (error) => error instanceof berrymq.TransportError &&
        error.message === `${url}: reply to request null, expected 1`);
      await assert.rejects(channel.call('v1'), (error) => error instanceof berrymq.TransportError &&
        error.message === `${url}: reply to request null, expected 2`);
      await assert.rejects(channel.call('invalid'), (error) => !(error instanceof berrymq.TransportError) && error.code === -32600);
    } finally {
      await channel.close();
      server.close();
    }
  });
});
