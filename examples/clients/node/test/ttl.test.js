'use strict';
/** A node whose max_ttl (100 s) is below the package's default ttl (1000 s): a connection
 * made without a ttl gets the node's limit, as docs/settings.md says of a client that
 * leaves ttl out (and as the Python client does); one given a ttl over it is refused. */

const assert = require('assert/strict');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, startNode } = require('./helpers');

describe('a node whose max_ttl is below the default ttl', { timeout: 4 * DEADLINE }, () => {
  let node;
  before(async () => { node = await startNode({ settings: { max_ttl: 100 } }); });
  after(async () => {
    await berrymq.closeConnection();
    await node.stop();
  });

  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: every style made without a ttl works, with the node's max_ttl`, async () => {
      const oneway = await berrymq.connectOneway(node[scheme]);
      const queue = await berrymq.connectViaQueue(node[scheme], 'ttl:*');
      const link = await berrymq.interconnect(node[scheme], () => {});
      try {
        assert.deepEqual([oneway.ttl, queue.ttl, link.ttl], [100, 100, 100]);
        assert.equal(link.renewing, true); // every ttl/3 s of the node's limit
        assert.equal(await oneway.sendMessage('ttl:one', [1]), 'ok');
        assert.equal(await link.sendMessage('ttl:two', [2]), 'ok');
        const got = [await queue.get({ timeout: DEADLINE / 1000 }), await queue.get({ timeout: DEADLINE / 1000 })];
        assert.deepEqual(got.map((m) => [m.id, m.args]), [['ttl:one', [1]], ['ttl:two', [2]]]);
        const given = await berrymq.connectOneway(node[scheme], { ttl: 30 });
        assert.equal(given.ttl, 30);
        await given.close();
        // a ttl given over the node's limit is the caller's to lower: refused, naming it
        await assert.rejects(berrymq.connectOneway(node[scheme], { ttl: 1000 }), (error) =>
          error instanceof berrymq.BerryMQError && error.code === berrymq.codes.LIMIT_REACHED &&
          error.data.setting === 'max_ttl' && error.data.limit === 100);
      } finally {
        await berrymq.closeConnection();
      }
    });
  }
});
