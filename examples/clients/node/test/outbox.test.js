'use strict';
/** Over TCP what is written and not yet taken by the node (the outbox) is bounded in lines
 * and bytes, as a Python client's outbox is (outbox_size, outbox_bytes): against a node
 * that reads nothing, postMessage waits for room up to its timeout, then rejects with
 * QueueFull naming the limit, and no message beyond the bound is said to be sent. */

const assert = require('assert/strict');
const { after, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, fakeTcpNode, until } = require('./helpers');

/** postMessage of `payload` in a loop until one rejects (or `most` resolved): [resolved, error]. */
async function flood(connection, payload, most) {
  for (let n = 0; n < most; n += 1) {
    try {
      await connection.postMessage('job:flood', [n, payload]);
    } catch (error) {
      return [n, error];
    }
  }
  return [most, null];
}

describe('over TCP, a node that takes nothing pushes back (the outbox)', { timeout: 4 * DEADLINE }, () => {
  const fakes = [];
  const node = async (onRequest = () => {}) => {
    const fake = await fakeTcpNode(onRequest);
    fakes.push(fake);
    return fake;
  };

  after(async () => {
    await berrymq.closeConnection().catch(() => {});
    await Promise.all(fakes.map((fake) => fake.stop()));
  });

  it('postMessage waits its timeout for room, then rejects with QueueFull naming outboxSize (2000 by default)', async () => {
    const fake = await node();
    const connection = await berrymq.connectOneway(fake.url, { timeout: 300 });
    for (const socket of fake.sockets) socket.pause(); // the node reads no more
    const payload = 'x'.repeat(10000);
    const [resolved, error] = await flood(connection, payload, 8000);
    assert.ok(error instanceof berrymq.QueueFull, `${resolved} messages of 10 kB said to be sent, no QueueFull: ${error}`);
    assert.ok(error instanceof berrymq.BerryMQError);
    assert.equal(error.code, berrymq.codes.QUEUE_FULL);
    assert.deepEqual(error.data, { setting: 'outboxSize', limit: 2000 });
    assert.match(error.message, /^Queue is full \(-32005\): the outbox of the connection to tcp:\/\/127\.0\.0\.1:\d+ stayed full for 300 ms: 2000 requests \(\d+ bytes\) written and not yet taken by the node, the limit is 2000 \(outboxSize\); it was not sent$/);
    // what is buffered here is the bound (the rest of what resolved is in the kernel's buffers)
    assert.ok(connection.channel.socket.writableLength <= 2000 * 10200, String(connection.channel.socket.writableLength));
    assert.equal(connection.closed, false); // only that call failed
  });

  it('outboxBytes bounds the bytes: QueueFull naming it', async () => {
    const fake = await node();
    const connection = await berrymq.connectOneway(fake.url, { timeout: 200, outboxBytes: 200000 });
    for (const socket of fake.sockets) socket.pause();
    const [resolved, error] = await flood(connection, 'x'.repeat(10000), 8000);
    assert.ok(error instanceof berrymq.QueueFull, `${resolved} messages of 10 kB said to be sent, no QueueFull: ${error}`);
    assert.deepEqual(error.data, { setting: 'outboxBytes', limit: 200000 });
    assert.match(error.message, /the limit is 200000 bytes \(outboxBytes\); it was not sent$/);
    assert.ok(connection.channel.socket.writableLength <= 200000, String(connection.channel.socket.writableLength));
    // a bad bound is the caller's mistake
    await assert.rejects(berrymq.connectOneway(fake.url, { outboxSize: 0 }), /'outboxSize' must be an integer >= 1, got 0/);
  });

  it('close() against a node that takes nothing rejects with a TransportError (not QueueFull), and closes', async () => {
    const fake = await node();
    const connection = await berrymq.connectOneway(fake.url, { timeout: 200, outboxSize: 5 });
    connection.channel.socket.cork(); // nothing written goes out: the outbox fills
    for (let n = 0; n < 5; n += 1) await connection.postMessage('job:flood', [n]);
    await assert.rejects(connection.close(), (error) => {
      assert.ok(error instanceof berrymq.TransportError && !(error instanceof berrymq.QueueFull), String(error));
      assert.match(error.message, /did not take close_connection in time: Queue is full .*outboxSize/);
      return true;
    });
    assert.equal(connection.closed, true);
  });

  it('a message that waits for room goes once there is room, in order with the rest', async () => {
    const seen = [];
    const fake = await node((request, socket) => {
      seen.push(request.params.args[0]);
      if ('id' in request) socket.write(`${JSON.stringify({ jsonrpc: '2.0', result: 'ok', id: request.id })}\n`);
    });
    const connection = await berrymq.connectOneway(fake.url, { timeout: DEADLINE, outboxSize: 20 });
    // nothing written goes out meanwhile, whatever room the kernel has: as a node that
    // takes nothing, deterministically
    connection.channel.socket.cork();
    const payload = 'x'.repeat(10000);
    for (let n = 0; n < 20; n += 1) await connection.postMessage('job:flood', [n, payload]);
    let settled = false;
    const waiting = connection.postMessage('job:flood', [20, payload]);
    waiting.then(() => { settled = true; }, () => { settled = true; });
    const behind = connection.postMessage('job:flood', [21, payload]); // waits behind it, in order
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, false, 'the message waiting for room was settled before there was any');
    assert.equal(connection.channel.roomWaiters.length, 2);
    connection.channel.socket.uncork();
    await waiting;
    await behind;
    const sent = 22;
    assert.equal(await connection.sendMessage('job:last', [sent]), 'ok');
    await until(() => seen.length === sent + 1, 'every message at the node');
    assert.deepEqual(seen, Array.from({ length: sent + 1 }, (_, i) => i));
  });
});
