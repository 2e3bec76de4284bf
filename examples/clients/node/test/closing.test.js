'use strict';
/** close() of a connection whose node is gone resolves, over TCP and HTTP alike: the
 * session is gone either way (README, "close()"). */

const assert = require('assert/strict');
const { describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, startNode } = require('./helpers');

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
