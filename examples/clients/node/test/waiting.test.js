'use strict';
/** Calls that wait (a blocking get, an ask) on one connection: each keeps its own timeout,
 * none waits behind another, and more of them than the node runs at once on a connection
 * (its max_waiting, 16) are queued here in order instead of being refused; the same over
 * TCP and HTTP. Against a real Python node. */

const assert = require('assert/strict');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, startNode } = require('./helpers');

const { codes } = berrymq;

/** Settles with [outcome, milliseconds] of `promise`, or rejects after `ms`: a call that
 * waits behind another fails here at once rather than after the other's 30 s. */
function timed(promise, ms, what) {
  const start = Date.now();
  let timer;
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  const settled = promise.then((value) => ({ value }), (error) => ({ error }))
    .then((outcome) => [outcome, Date.now() - start]);
  return Promise.race([settled, late]).finally(() => clearTimeout(timer));
}

describe('calls that wait', { timeout: 8 * DEADLINE }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(async () => { await berrymq.closeConnection(); await node.stop(); });

  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: an ask is answered while a get of the same connection waits`, async () => {
      const queue = await berrymq.connectViaQueue(node[scheme], 'wait:*', { ttl: 60 });
      try {
        const waiting = queue.get(); // the docs' for-await loop: a get with no timeout
        waiting.catch(() => {}); // awaited below; ended by close() on a failure
        const [outcome] = await timed(queue.ask('price:quote', [2], {}, { timeout: 2 }), 6000, 'ask');
        assert.deepEqual(outcome, { value: [19] });
        // and a get with a timeout beside it ends at its own timeout
        const [empty, ms] = await timed(queue.get({ timeout: 0.3 }), 6000, 'get');
        assert.ok(empty.error instanceof berrymq.Empty, String(empty.error));
        assert.ok(ms >= 250, `${ms} ms`);
        const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
        await sender.sendMessage('wait:done');
        assert.equal((await waiting).id, 'wait:done');
        await sender.close();
      } finally {
        await queue.close();
      }
    });

    it(`over ${scheme}: 20 gets with a timeout of 1 s all end with Empty at about 1 s`, async () => {
      const queue = await berrymq.connectViaQueue(node[scheme], 'none:*', { ttl: 60 });
      try {
        const results = await timed(Promise.all([...Array(20).keys()].map(
          () => queue.get({ timeout: 1 }).then(() => 'a message', (error) => error))), 6000, '20 gets');
        const [{ value: errors }, ms] = results;
        for (const error of errors) assert.ok(error instanceof berrymq.Empty, String(error));
        assert.ok(ms >= 900, `${ms} ms`);
      } finally {
        await queue.close();
      }
    });

    it(`over ${scheme}: 20 waiting gets share the messages, none refused or lost`, async () => {
      const queue = await berrymq.connectViaQueue(node[scheme], 'many:*', { ttl: 60 });
      const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
      try {
        const gets = [...Array(20).keys()].map(() => queue.get({ timeout: DEADLINE / 1000 }));
        for (const get of gets) get.catch(() => {}); // awaited below; ended by close() on a failure
        await sender.sendMessages([...Array(20).keys()].map((i) => [`many:${i}`, [i], {}]));
        const got = await Promise.all(gets);
        assert.deepEqual(got.map((m) => m.args[0]).sort((a, b) => a - b), [...Array(20).keys()]);
      } finally {
        await sender.close();
        await queue.close();
      }
    });

    it(`over ${scheme}: an ask queued behind 16 waiting gets ends at its own timeout, saying why`, async () => {
      const queue = await berrymq.connectViaQueue(node[scheme], 'hold:*', { ttl: 60 });
      const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
      try {
        const gets = [...Array(16).keys()].map(() => queue.get({ timeout: DEADLINE / 1000 }));
        for (const get of gets) get.catch(() => {}); // awaited below; ended by close() on a failure
        const [outcome, ms] = await timed(queue.ask('price:quote', [1], {}, { timeout: 0.5 }), 6000, 'ask');
        assert.ok(outcome.error instanceof berrymq.BerryMQError, String(outcome.error || outcome.value));
        assert.equal(outcome.error.code, codes.LIMIT_REACHED);
        assert.equal(outcome.error.data.setting, 'max_waiting');
        assert.match(outcome.error.message, /^Limit reached \(-32009\): the ask's timeout of 0\.5 s ran out .*16 calls that wait/);
        assert.ok(ms >= 450, `${ms} ms`);
        assert.equal(queue.closed, false);
        await sender.sendMessages([...Array(16).keys()].map((i) => [`hold:${i}`, [i], {}]));
        assert.equal((await Promise.all(gets)).length, 16);
        assert.deepEqual(await queue.ask('price:quote', [2], {}, { timeout: 5 }), [19]);
      } finally {
        await sender.close();
        await queue.close();
      }
    });
  }
});
