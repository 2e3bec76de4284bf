'use strict';
/** Failures, each a defined error that names the problem: an unreachable node, a bad
 * address, bad or stale tokens, a wrong shared secret, a node that goes away. */

const assert = require('assert/strict');
const net = require('net');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, freePort, runCli, startNode } = require('./helpers');

const { codes } = berrymq;

describe('errors', { timeout: 6 * DEADLINE }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(async () => { await berrymq.closeConnection(); await node.stop(); });

  it('an unreachable node: ConnectionClosed naming the URL', async () => {
    const port = await freePort();
    for (const scheme of ['tcp', 'http']) {
      const url = `${scheme}://127.0.0.1:${port}`;
      await assert.rejects(berrymq.connectOneway(url), (error) => error instanceof berrymq.ConnectionClosed &&
        error.code === null && error.message.startsWith(`cannot reach ${url}: `) && /ECONNREFUSED/.test(error.message));
      await assert.rejects(berrymq.interconnect(url, () => {}), berrymq.ConnectionClosed);
    }
    assert.equal(berrymq.connections.length, 0);
  });

  it('a node that accepts and never answers: TransportError within the timeout, both transports', async () => {
    const sockets = [];
    const silent = net.createServer((socket) => sockets.push(socket)); // answers nothing
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address();
    try {
      for (const scheme of ['tcp', 'http']) {
        const url = `${scheme}://127.0.0.1:${port}`;
        const start = Date.now();
        // it was reached: "no answer", not "cannot reach"
        const said = scheme === 'tcp' ? `${url} did not answer within 300 ms` : `no answer from ${url} within 300 ms`;
        await assert.rejects(berrymq.connectOneway(url, { timeout: 300 }), (error) =>
          error instanceof berrymq.TransportError && !(error instanceof berrymq.ConnectionClosed) &&
          error.message === said);
        assert.ok(Date.now() - start < 3000, `${scheme}: ${Date.now() - start} ms`);
      }
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
    assert.equal(berrymq.connections.length, 0);
  });

  it('an address that is not tcp:// or http://: TypeError before any connection', async () => {
    for (const url of ['ftp://127.0.0.1:7000', '127.0.0.1:7000', 'tcp://127.0.0.1', 'tcp://h:99999', 42]) {
      await assert.rejects(berrymq.connectOneway(url), (error) => error instanceof TypeError &&
        /^not a berryMQ address: .*write tcp:\/\/host:port or http:\/\/host:port/.test(error.message));
    }
  });

  it('arguments of the wrong type: TypeError, nothing sent', async () => {
    const oneway = await berrymq.connectOneway(node.tcp, { ttl: 60 });
    await assert.rejects(oneway.sendMessage('a:b', 'not an array'), /args must be an array/);
    await assert.rejects(oneway.sendMessage('a:b', [], [1]), /kwargs must be an object/);
    await assert.rejects(oneway.sendMessage(7), /an identifier is a string/);
    assert.throws(() => berrymq.interconnect(node.tcp, 'not a function'), /needs onMessage/);
    await oneway.close();
  });

  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: an error's message says the node's data.detail, when it has one`, async () => {
      await assert.rejects(berrymq.connectOneway(node[scheme], { ttl: 100000 }), (error) =>
        error instanceof berrymq.BerryMQError && error.code === codes.LIMIT_REACHED &&
        error.data.setting === 'max_ttl' && error.message === `Limit reached (-32009): ${error.data.detail}` &&
        /at most 86400 seconds/.test(error.data.detail));
    });

    it(`over ${scheme}: close() of a session the node no longer has resolves (expired, closed, node restarted)`, async () => {
      const url = node[scheme];
      const channel = await berrymq.connect(url);
      try {
        const queue = await berrymq.connectViaQueue(url, 'job:*', { ttl: 60 });
        const oneway = await berrymq.connectOneway(url, { ttl: 60 });
        // what an expiry or a restart leaves: a token the node does not know (-32001)
        for (const connection of [queue, oneway]) {
          assert.equal(await channel.call('close_connection', { token: connection.token }), 'ok');
        }
        await assert.rejects(queue.getNowait(), { code: codes.UNKNOWN_TOKEN });
        assert.equal(await queue.close(), undefined);
        assert.equal((await queue.ended).code, codes.UNKNOWN_TOKEN); // it ended before close()
        assert.equal(await berrymq.closeConnection(oneway.url), undefined); // the docs' pattern
        assert.equal(oneway.closed, true);
        assert.ok(!berrymq.connections.includes(oneway));
      } finally {
        await channel.close();
      }
    });

    it(`over ${scheme}: a session the node no longer knows (expired, node restarted) ends the connection`, async () => {
      const url = node[scheme];
      const channel = await berrymq.connect(url);
      const queue = await berrymq.connectViaQueue(url, 'job:*', { ttl: 60 });
      try {
        // what an expiry or a restart leaves: a token the node does not know (-32001)
        assert.equal(await channel.call('close_connection', { token: queue.token }), 'ok');
        const said = `the node no longer knows this connection to ${url}: Unknown or expired token (-32001)`;
        const gone = (error) => error instanceof berrymq.ConnectionClosed && error.code === codes.UNKNOWN_TOKEN &&
          error.message === said;
        await assert.rejects(queue.sendMessage('job:x'), gone);
        assert.equal(queue.closed, true);
        assert.ok(gone(await queue.ended), 'ended resolves with it');
        assert.ok(!berrymq.connections.includes(queue));
        await assert.rejects(queue.get({ timeout: 1 }), gone); // every later call
        await queue.close(); // gone already: nothing to do
      } finally {
        await channel.close();
      }
    });

    it(`over ${scheme}: close() while a get waits ends that get with ConnectionClosed`, async () => {
      const queue = await berrymq.connectViaQueue(node[scheme], 'job:*', { ttl: 60 });
      const waiting = queue.get().then(() => null, (error) => error); // no timeout
      const ask = await queue.ask('price:quote', [2]); // the get was sent before it
      assert.deepEqual(ask, [19]);
      await queue.close();
      const error = await waiting;
      assert.ok(error instanceof berrymq.ConnectionClosed, String(error));
      assert.equal(error.message, `the connection to ${node[scheme]} is closed`);
      assert.equal(await queue.ended, null);
    });

    it(`bad and stale tokens over ${scheme}: the node's error codes`, async () => {
      const url = node[scheme];
      const queue = await berrymq.connectViaQueue(url, 'job:*', { ttl: 60 });
      const oneway = await berrymq.connectOneway(url, { ttl: 60 });
      const channel = await berrymq.connect(url);
      try {
        await assert.rejects(channel.call('get_nowait', { token: 'not-a-token' }),
          { name: 'BerryMQError', code: codes.BAD_TOKEN, message: 'Malformed token (-32008)' });
        await assert.rejects(channel.call('send_message', { token: 'A'.repeat(43), identifier: 'job:x' }),
          { code: codes.UNKNOWN_TOKEN, message: 'Unknown or expired token (-32001)' });
        await assert.rejects(oneway.getNowait(), { code: codes.NO_QUEUE });
        await assert.rejects(oneway.sendMessage('te*:x'), (error) => error.code === codes.INVALID_PARAMS &&
          /partial wildcard/.test(error.message));
        await assert.rejects(berrymq.connectViaQueue(url, '_local:*'), { code: codes.INVALID_PARAMS });
        // a token closed by someone else (here: the raw channel) is refused afterwards
        assert.equal(await channel.call('close_connection', { token: queue.token }), 'ok');
        await assert.rejects(queue.getNowait(), { code: codes.UNKNOWN_TOKEN });
        await assert.rejects(queue.sendMessage('job:x'), { code: codes.UNKNOWN_TOKEN });
      } finally {
        await channel.close();
        await oneway.close();
        await queue.close(); // its session is gone already: nothing to do
      }
    });
  }
});

describe('a peer that is not a berryMQ node', { timeout: 2 * DEADLINE }, () => {
  it('over TCP: an endless line closes the connection instead of filling memory', async () => {
    const server = require('net').createServer((socket) => {
      socket.on('error', () => {}); // the client cuts it short: that is the point
      socket.once('data', () => socket.write('x'.repeat(9 * 1024 * 1024))); // never a newline
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `tcp://127.0.0.1:${server.address().port}`;
    try {
      // what is read of one answer: 4x maxSize (1 MiB by default)
      await assert.rejects(berrymq.connectOneway(url), (error) => error instanceof berrymq.ConnectionClosed &&
        error.message.startsWith(`${url} sent a line over the limit of 4194304 bytes (an answer: 4 x max(maxSize, 1 MiB) = 4 x 1048576; `) &&
        error.message.endsWith(' bytes read of it); connection closed'));
    } finally {
      server.close();
    }
  });
});

describe('over HTTP, a peer that was reached but gave no answer: not "cannot reach"', { timeout: 2 * DEADLINE }, () => {
  /** A server on a free port that does `then(socket)` with each request once it came. */
  async function serving(then) {
    const sockets = new Set();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.once('data', () => then(socket));
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${server.address().port}`,
      close: () => { for (const socket of sockets) socket.destroy(); server.close(); } };
  }

  it('it closes the connection without answering: TransportError saying so', async () => {
    const peer = await serving((socket) => socket.destroy());
    try {
      const channel = await berrymq.connect(peer.url);
      await assert.rejects(channel.call('connect_oneway', { ttl: 10 }), (error) =>
        error instanceof berrymq.TransportError && !(error instanceof berrymq.ConnectionClosed) &&
        error.message === `${peer.url} closed the connection without answering: socket hang up`);
      await channel.close();
    } finally {
      peer.close();
    }
  });

  it('it answers something that is not HTTP: TransportError saying so', async () => {
    const peer = await serving((socket) => socket.end('hello, this is not HTTP\r\n\r\n'));
    try {
      const channel = await berrymq.connect(peer.url);
      await assert.rejects(channel.call('connect_oneway', { ttl: 10 }), (error) =>
        error instanceof berrymq.TransportError && !(error instanceof berrymq.ConnectionClosed) &&
        error.message.startsWith(`${peer.url} answered something that is not HTTP: Parse Error`));
      await channel.close();
    } finally {
      peer.close();
    }
  });
});

describe('a node with a shared secret', { timeout: 4 * DEADLINE }, () => {
  let node;
  before(async () => { node = await startNode({ env: { BERRYMQ_SECRET: 'correct horse' } }); });
  after(async () => { await node.stop(); });

  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: no or a wrong secret is Unauthorised, the right one works`, async () => {
      const url = node[scheme];
      // it said 'Unauthorised (-32004)', naming neither the node nor what was wrong
      const why = {
        null: "no secret was given; pass the secret option or set BERRYMQ_SECRET to the node's shared secret",
        wrong: "the secret given was refused (a wrong secret: not the node's shared secret)",
      };
      for (const secret of [null, 'wrong']) {
        await assert.rejects(berrymq.connectOneway(url, { secret }),
          { code: codes.UNAUTHORISED, message: `${url} refused the request: Unauthorised (-32004): ${why[secret]}` });
      }
      const oneway = await berrymq.connectOneway(url, { ttl: 60, secret: 'correct horse' });
      assert.equal(await oneway.sendMessage('node:secret', [1]), 'ok');
      assert.equal(await node.stdout.next(), 'node:secret [1]');
      await oneway.close();
    });
  }

  it('berrymq-js: a missing or wrong BERRYMQ_SECRET is exit status 1, the right one 0', async () => {
    for (const [secret, why] of [['', "no secret was given; pass the secret option or set BERRYMQ_SECRET to the node's shared secret"],
      ['wrong', "the secret given was refused (a wrong secret: not the node's shared secret)"]]) {
      const result = await runCli(['send', node.tcp, 'node:cli'], { env: { BERRYMQ_SECRET: secret } });
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, `berrymq-js: error: ${node.tcp} refused the request: Unauthorised (-32004): ${why}\n`);
    }
    const result = await runCli(['send', node.http, 'node:cli'], { env: { BERRYMQ_SECRET: 'correct horse' } });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await node.stdout.next(), 'node:cli []');
  });
});

describe('a node that goes away', { timeout: 4 * DEADLINE }, () => {
  it('over TCP: a waiting get and the connection end with ConnectionClosed', async () => {
    const node = await startNode();
    try {
      const queue = await berrymq.connectViaQueue(node.tcp, 'job:*', { ttl: 60 });
      const link = await berrymq.interconnect(node.tcp, () => {}, { ttl: 60 });
      const waiting = queue.get().then(() => null, (error) => error); // no timeout
      await node.stop();
      // a stopping node closes its sessions (-32001) or just the connection
      const error = await waiting;
      assert.ok(error instanceof berrymq.ConnectionClosed || error.code === codes.UNKNOWN_TOKEN, String(error));
      assert.ok((await link.ended) instanceof berrymq.ConnectionClosed);
      assert.equal(queue.closed, true);
      await assert.rejects(link.sendMessage('job:x'), berrymq.ConnectionClosed);
      assert.deepEqual(berrymq.connections, []);
    } finally {
      await node.stop();
    }
  });

  it('over HTTP: the next request fails with ConnectionClosed and ends the connection', async () => {
    const node = await startNode();
    try {
      const oneway = await berrymq.connectOneway(node.http, { ttl: 60 });
      await node.stop();
      await assert.rejects(oneway.sendMessage('job:x'), (error) => error instanceof berrymq.ConnectionClosed &&
        error.message.startsWith(`cannot reach ${node.http}`));
      assert.ok((await oneway.ended) instanceof berrymq.ConnectionClosed);
      assert.equal(oneway.closed, true);
      await oneway.close(); // closing an ended connection does nothing
    } finally {
      await node.stop();
    }
  });
});
