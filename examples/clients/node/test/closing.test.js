'use strict';
/** close() of a connection whose node is gone resolves, over TCP and HTTP alike: the
 * session is gone either way (README, "close()"). */

const assert = require('assert/strict');
const { describe, it } = require('node:test');
const http = require('http');
const path = require('path');
const berrymq = require('..');
const { DEADLINE, start, startNode } = require('./helpers');

/** A program that connects one way and to a queue, sends, takes its message and is done:
 * it prints "done" and leaves its connections open. */
const DONE_PROGRAM = `
const berrymq = require(${JSON.stringify(path.join(__dirname, '..'))});
(async () => {
  const oneway = await berrymq.connectOneway(process.argv[1]);
  await oneway.sendMessage('job:one', [1]);
  const queue = await berrymq.connectViaQueue(process.argv[1], 'done:*');
  await queue.sendMessage('done:x', [2]);
  console.log('done', JSON.stringify((await queue.get({ timeout: 20 })).args));
})();
`;

/** The node's /status, read over HTTP. */
function statusOf(url) {
  return new Promise((resolve, reject) => {
    http.get(`${url}/status`, { agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; }).on('end', () => resolve(JSON.parse(text)));
    }).on('error', reject);
  });
}

describe('close() when the node is gone', { timeout: 2 * DEADLINE }, () => {
  it('resolves over both transports, for every style, and so does closeConnection()', async () => {
    const node = await startNode();
    let connections = [];
    try {
      for (const scheme of ['tcp', 'http']) {
        const url = node[scheme];
        connections.push(await berrymq.connectOneway(url, { ttl: 60 }),
          await berrymq.connectViaQueue(url, 'job:*', { ttl: 60 }),
          await berrymq.interconnect(url, () => {}, { ttl: 60, onError: () => {} }));
      }
      for (const connection of connections) assert.equal(await connection.sendMessage('job:x', [1]), 'ok');
    } finally {
      await node.stop();
    }
    for (const connection of connections.filter((c) => c.url.startsWith('tcp:') && c.style !== 'interconnect')) {
      // a node that stopped is told from a connection we closed (both were "is closed")
      const reason = await connection.ended;
      assert.ok(reason instanceof berrymq.ConnectionClosed, String(reason));
      assert.equal(reason.message, `${connection.url} closed the connection`);
    }
    const [first, ...rest] = connections;
    await first.close(); // one alone
    assert.equal(await berrymq.closeConnection(), undefined); // and every other
    for (const connection of rest) assert.equal(connection.closed, true, connection.url);
    connections = [];
    assert.equal(berrymq.connections.length, 0);
  });
});

describe('a program that is done', { timeout: 2 * DEADLINE }, () => {
  it('ends with its connections left open, over TCP as over HTTP, and they are closed at the node', async () => {
    // (over TCP the socket of an idle connection kept the process running for good, and a
    // killed one left its sessions, and what its queue held, at the node for their ttl)
    const node = await startNode();
    try {
      for (const scheme of ['tcp', 'http']) {
        const program = start([process.execPath, '-e', DONE_PROGRAM, node[scheme]], { what: `a program (${scheme})` });
        assert.equal(await program.stdout.next(), 'done [2]');
        const timer = setTimeout(() => program.child.kill('SIGKILL'), DEADLINE);
        const code = await program.exited;
        clearTimeout(timer);
        assert.equal(code, 0, `the program over ${scheme} did not end by itself`);
        const status = await statusOf(node.http);
        assert.deepEqual(status.sessions, [], `${scheme}: the sessions were not closed`);
      }
    } finally {
      await node.stop();
    }
  });
});
