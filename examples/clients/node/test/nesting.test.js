'use strict';
/** What a peer sends nested deeper than a node reads (128 levels of arrays and objects,
 * docs/protocol.md, "Nesting"): a request to an interconnected client is answered as the
 * Python node answers the same text (a Parse error naming the limit, nothing run), and an
 * answer fails its call with a TransportError naming the limit; nothing deeper is parsed
 * into an object (JSON.parse would, millions of levels deep, and the first JSON.stringify
 * of it would throw a RangeError). */

const assert = require('assert/strict');
const http = require('http');
const net = require('net');
const readline = require('readline');
const { describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, Inbox, postJson, startNode, withHttpLink } = require('./helpers');

const LIMIT = 'the text nests arrays and objects more than 128 levels deep, the limit';
const PARSE_ERROR = { jsonrpc: '2.0', error: { code: -32700, message: 'Parse error', data: { limit: 128, detail: LIMIT } }, id: null };

/** The JSON text of an array nested `levels` deep. */
function nested(levels) {
  return '['.repeat(levels) + ']'.repeat(levels);
}

/** A send_message request whose text nests `levels` deep (its args are at level 3). */
function deepSend(token, levels, id = 1) {
  return `{"jsonrpc":"2.0","method":"send_message","params":{"token":${JSON.stringify(token)},` +
    `"identifier":"deep:msg","args":${nested(levels - 2)}},"id":${id}}`;
}

/** Write `line` to a TCP address (host:port) and resolve with the line answered. */
function exchangeLine(address, line) {
  const [host, port] = address.replace(/^tcp:\/\//, '').split(':');
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ host, port: Number(port) }, () => socket.write(`${line}\n`));
    socket.on('error', reject);
    readline.createInterface({ input: socket }).once('line', (answer) => { socket.destroy(); resolve(answer); });
  });
}

/** A TCP peer on a free port that plays a node: `onLine(line, socket)` for each line. */
async function tcpPeer(onLine) {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    readline.createInterface({ input: socket }).on('line', (line) => onLine(line, socket));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `tcp://127.0.0.1:${server.address().port}`,
    close: () => { for (const socket of sockets) socket.destroy(); server.close(); } };
}

describe('a request nested deeper than 128 levels, to an interconnected client', { timeout: 4 * DEADLINE }, () => {
  it('over HTTP: the callback server answers what the Python node answers, and nothing runs', async () => {
    await withHttpLink(async ({ node, link, inbox, callback }) => {
      const token = link.channel.answerer.token;
      for (const levels of [129, 200, 100000]) {
        const fromNode = await postJson(node.http, deepSend('t'.repeat(43), levels));
        assert.deepEqual(fromNode, [200, PARSE_ERROR], `the Python node, ${levels} levels`);
        assert.deepEqual(await postJson(callback, deepSend(token, levels)), fromNode, `${levels} levels`);
      }
      // 128 levels are read and delivered; the link goes on
      assert.deepEqual(await postJson(callback, deepSend(token, 128)), [200, { jsonrpc: '2.0', result: 'ok', id: 1 }]);
      const read = await inbox.next();
      assert.equal(read.id, 'deep:msg', 'nothing deeper was delivered before it');
      const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
      await sender.sendMessage('news:after', [1]);
      assert.equal((await inbox.next()).id, 'news:after');
      await sender.close();
    });
  });

  it('over TCP: the client answers the line what the Python node answers it, and nothing runs', async () => {
    const node = await startNode();
    const token = 'T'.repeat(43);
    const answers = new Inbox('the client\'s answers');
    const peer = await tcpPeer((line, socket) => {
      const obj = JSON.parse(line);
      if (obj.method === 'interconnect') {
        socket.write(`${JSON.stringify({ jsonrpc: '2.0', result: token, id: obj.id })}\n`);
        for (const [i, levels] of [129, 200, 100000, 128].entries()) socket.write(`${deepSend(obj.params.token, levels, i + 1)}\n`);
      } else if (obj.method === 'close_connection') {
        socket.write(`${JSON.stringify({ jsonrpc: '2.0', result: 'ok', id: obj.id })}\n`);
      } else {
        answers.put(obj);
      }
    });
    let link = null;
    try {
      const got = [];
      link = await berrymq.interconnect(peer.url, (m) => got.push(m), { ttl: 60 });
      for (const levels of [129, 200, 100000]) {
        const fromNode = JSON.parse(await exchangeLine(node.tcp, deepSend('t'.repeat(43), levels)));
        assert.deepEqual(fromNode, PARSE_ERROR, `the Python node, ${levels} levels`);
        assert.deepEqual(await answers.next(), fromNode, `${levels} levels`);
      }
      assert.deepEqual(await answers.next(), { jsonrpc: '2.0', result: 'ok', id: 4 }, '128 levels are read');
      assert.deepEqual(got.map((m) => m.id), ['deep:msg']);
    } finally {
      try {
        if (link !== null) await link.close();
      } finally {
        peer.close();
        await node.stop();
      }
    }
  });
});

describe('an answer nested deeper than 128 levels', { timeout: 2 * DEADLINE }, () => {
  it('over TCP: the call it answers fails with a TransportError naming the limit; the connection goes on', async () => {
    const peer = await tcpPeer((line, socket) => {
      const obj = JSON.parse(line);
      const answer = (result) => `${(Array.isArray(obj) ? obj : [obj]).map((r) =>
        `{"jsonrpc":"2.0","result":${result},"id":${r.id}}`).join(',')}`;
      const text = Array.isArray(obj) ? `[${answer(nested(300))}]` :
        obj.method === 'deep' ? answer(nested(obj.params.levels)) : answer('"fine"');
      socket.write(`${text}\n`);
    });
    try {
      const channel = await berrymq.connect(peer.url);
      const said = `${peer.url} answered with a text that is not read: ${LIMIT} (docs/protocol.md, "Nesting")`;
      for (const levels of [128, 1000000]) {
        await assert.rejects(channel.call('deep', { levels }), (error) => error instanceof berrymq.TransportError &&
          !(error instanceof berrymq.ConnectionClosed) && error.code === null && error.message === said, `${levels}`);
      }
      await assert.rejects(channel.batch([{ method: 'a' }, { method: 'b' }]), (error) => error.message === said);
      assert.equal((await channel.call('deep', { levels: 127 })).length, 1, '128 levels in all are read');
      assert.equal(await channel.call('other'), 'fine');
      await channel.close();
    } finally {
      peer.close();
    }
  });

  it('over HTTP: the call fails with a TransportError naming the limit; the connection goes on', async () => {
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => { body += d; }).on('end', () => {
        const { id, params } = JSON.parse(body);
        const text = `{"jsonrpc":"2.0","result":${params.levels ? nested(params.levels) : '"fine"'},"id":${id}}`;
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(text);
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${server.address().port}`;
    try {
      const channel = await berrymq.connect(url);
      for (const levels of [128, 1000000]) {
        await assert.rejects(channel.call('deep', { levels }), (error) => error instanceof berrymq.TransportError &&
          !(error instanceof berrymq.ConnectionClosed) && error.code === null &&
          error.message === `${url} answered with a text that is not read: ${LIMIT} (docs/protocol.md, "Nesting")`);
      }
      assert.equal((await channel.call('deep', { levels: 127 })).length, 1, '128 levels in all are read');
      assert.equal(await channel.call('other', {}), 'fine');
      await channel.close();
    } finally {
      server.close();
    }
  });
});
