'use strict';
/** Over TCP a call the node did not answer in time is remembered, so that its late answer
 * is dropped, for the last 64 such calls only (docs/protocol.md, "Limits"): timed-out calls
 * do not pile up in the channel. */

const assert = require('assert/strict');
const { after, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, fakeTcpNode, until } = require('./helpers');

describe('over TCP, calls that timed out', { timeout: 2 * DEADLINE }, () => {
  let fake = null;

  after(async () => {
    await berrymq.closeConnection().catch(() => {});
    if (fake !== null) await fake.stop();
  });

  it('leave at most the last 64 behind; their late answers settle nothing else, and the connection goes on', async () => {
    const held = []; // what the node has not answered yet
    let answering = false;
    const answer = (socket, request) => socket.write(`${JSON.stringify({ jsonrpc: '2.0', result: 'ok', id: request.id })}\n`);
    fake = await fakeTcpNode((request, socket) => {
      if (answering) answer(socket, request); else held.push([socket, request]);
    });
    const connection = await berrymq.connectOneway(fake.url, { timeout: 50 });
    const channel = connection.channel;
    const calls = Array.from({ length: 500 }, (_, i) => connection.sendMessage('job:x', [i]));
    const outcomes = await Promise.allSettled(calls);
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      assert.ok(outcome.reason instanceof berrymq.TransportError, String(outcome.reason));
      assert.match(outcome.reason.message, /did not answer within 50 ms$/);
    }
    assert.ok(channel.pending.size <= 64, `${channel.pending.size} calls that timed out still pending`);
    assert.ok(channel.inOrder.size <= 64, `${channel.inOrder.size} calls that timed out still in order`);
    // the late answers come (all 500, the forgotten ones' too): read and dropped
    await until(() => held.length === 500, 'every request at the node');
    answering = true;
    for (const [socket, request] of held.splice(0)) answer(socket, request);
    channel.timeout = DEADLINE; // (the next call has time to be answered on a loaded machine)
    assert.equal(await connection.sendMessage('job:after', [1]), 'ok');
    assert.equal(connection.closed, false);
    await until(() => channel.pending.size === 0 && channel.inOrder.size === 0, 'nothing left pending');
  });
});
