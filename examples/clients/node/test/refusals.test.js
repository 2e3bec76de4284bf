'use strict';
/** What the node refuses without knowing which request it answers (`id` null): an
 * error at once, against a real Python node. */

const assert = require('assert/strict');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, startNode } = require('./helpers');

const { codes } = berrymq;

let node;
before(async () => { node = await startNode(); });
after(async () => { await berrymq.closeConnection(); await node.stop(); });

for (const scheme of ['tcp', 'http']) {
  const url = () => node[scheme];

  describe(`over ${scheme}`, { timeout: 4 * DEADLINE }, () => {
    it('a reply with id null (Invalid Request) settles the batch or the call it answers at once', async () => {
      const channel = await berrymq.connect(url(), { timeout: 4 * DEADLINE });
      try {
        const start = Date.now();
        const invalid = { jsonrpc: '2.0', error: { code: codes.INVALID_REQUEST, message: 'Invalid Request' }, id: null };
        assert.deepEqual(await channel.batch([{ method: 'connect_oneway', params: 5 }]), [invalid]);
        assert.deepEqual(await channel.batch([]), invalid);
        await assert.rejects(channel.call('connect_oneway', 5), { code: codes.INVALID_REQUEST });
        // an invalid notification is answered too: that answer is tied to it, not to the next call
        await channel.notify('connect_oneway', 5);
        assert.match(await channel.call('connect_oneway', { ttl: 10 }), /^[A-Za-z0-9_-]{43}$/);
        const good = await channel.batch([{ method: 'connect_oneway', params: { ttl: 10 } },
          { method: 'connect_oneway', params: 5 }, { method: 'nope', params: {} }]);
        assert.equal(good.length, 3);
        assert.deepEqual(good[1], invalid);
        assert.equal(good[2].error.code, codes.METHOD_NOT_FOUND);
        assert.ok(Date.now() - start < DEADLINE, `${Date.now() - start} ms`);
      } finally {
        await channel.close();
      }
    });
  });
}

describe('over tcp, with requests outstanding', { timeout: 4 * DEADLINE }, () => {
  it('an id-null reply settles the oldest request that does not wait, not a waiting get', async () => {
    const channel = await berrymq.connect(node.tcp, { timeout: 4 * DEADLINE });
    const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
    try {
      const queue = await channel.call('connect_via_queue', { identifier: 'job:*', ttl: 60 });
      const waiting = channel.call('get', { token: queue, block: true, timeout: 30 }, { wait: 30 });
      const start = Date.now();
      const calls = [channel.call('connect_oneway', 5), channel.call('connect_oneway', { ttl: 10 }),
        channel.call('connect_oneway', [])];
      const [first, second, third] = await Promise.allSettled(calls);
      assert.equal(first.reason.code, codes.INVALID_REQUEST);
      assert.match(second.value, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(third.status, 'fulfilled', String(third.reason)); // params [] is valid
      assert.ok(Date.now() - start < DEADLINE, `${Date.now() - start} ms`);
      await sender.sendMessage('job:for-the-get', [1]);
      assert.deepEqual(await waiting, ['job:for-the-get', [1], {}]);
    } finally {
      await sender.close();
      await channel.close();
    }
  });
});
