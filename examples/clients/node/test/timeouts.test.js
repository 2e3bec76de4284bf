'use strict';
/** Timeouts: a call the node does not answer in time fails alone, with a TransportError,
 * and the connection goes on (over HTTP without cutting short the other calls in flight).
 * Against a real Python node, stopped with SIGSTOP for a while. */

const assert = require('assert/strict');
const { describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, startNode } = require('./helpers');

/** Settles with [outcome, milliseconds since `start`] of `promise`. */
function outcome(promise, start) {
  return promise.then((value) => ({ value }), (error) => ({ error })).then((o) => [o, Date.now() - start]);
}

describe('a node that stops answering for a while', { timeout: 4 * DEADLINE }, () => {
  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: each call fails at its own timeout with a TransportError, and the connection goes on`, async () => {
      const node = await startNode();
      let stopped = false;
      try {
        const queue = await berrymq.connectViaQueue(node[scheme], 'stall:*', { ttl: 60, timeout: 1500 });
        node.child.kill('SIGSTOP');
        stopped = true;
        const start = Date.now();
        const [sent, got, asked] = await Promise.all([
          outcome(queue.sendMessage('other:stalled'), start),
          outcome(queue.get({ timeout: 1 }), start),
          outcome(queue.ask('price:quote', [2], {}, { timeout: 1 }), start)]);
        const said = (ms) => (scheme === 'tcp' ? `${node[scheme]} did not answer within ${ms}` :
          `no answer from ${node[scheme]} within ${ms}`);
        for (const [[{ error }, ms], within] of [[sent, 1500], [got, 2000], [asked, 2000]]) {
          assert.ok(error instanceof berrymq.TransportError && !(error instanceof berrymq.ConnectionClosed), String(error));
          assert.equal(error.code, null);
          assert.ok(error.message.startsWith(said(within === 1500 ? 1500 : '')), error.message);
          // each at its own timeout: the get's and the ask's (their wait and the 1500 ms
          // the connection gives an answer) are not cut short by the send's
          assert.ok(ms >= within - 50, `${error.message} after ${ms} ms`);
        }
        assert.equal(queue.closed, false);
        node.child.kill('SIGCONT');
        stopped = false;
        assert.deepEqual(await queue.ask('price:quote', [2], {}, { timeout: 5 }), [19]);
        assert.equal(await queue.sendMessage('other:after'), 'ok');
        await assert.rejects(queue.getNowait(), berrymq.Empty); // the session is there
        await assert.rejects(queue.get({ timeout: 0.2 }), berrymq.Empty);
        assert.equal(queue.closed, false);
        await queue.close();
        assert.equal(await queue.ended, null);
      } finally {
        if (stopped) node.child.kill('SIGCONT');
        await node.stop();
      }
    });
  }
});
