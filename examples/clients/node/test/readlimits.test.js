'use strict';
/** maxSize: the client tells the node its own (connect_via_queue, interconnect), so that the
 * node sends it nothing larger, and reads at most 4x maxSize of one answer (a TCP line, an
 * HTTP body), what a node's answers keep within (docs/protocol.md, "Limits"). */

const assert = require('assert/strict');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, fakeHttpNode, fakeTcpNode, Inbox, startNode } = require('./helpers');

const MiB = 1024 * 1024;

describe('what is read of one answer is bounded by 4x maxSize', { timeout: 4 * DEADLINE }, () => {
  const fakes = [];

  after(async () => {
    await berrymq.closeConnection().catch(() => {});
    await Promise.all(fakes.map((fake) => fake.stop()));
  });

  it('over HTTP, an endless answer: the request is dropped, TransportError naming the limit', async () => {
    let written = 0;
    let gone = false;
    const fake = await fakeHttpNode((request, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' }); // chunked, endless (up to 64 MiB)
      const chunk = Buffer.alloc(64 * 1024, 'a');
      res.on('close', () => { gone = true; });
      const more = () => {
        while (!gone && written < 64 * MiB) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    });
    fakes.push(fake);
    for (const [options, limit] of [[{}, 4 * MiB], [{ maxSize: 4096 }, 4 * MiB]]) { // 1 MiB at least
      written = 0;
      gone = false;
      const connection = await berrymq.connectOneway(fake.url, { timeout: DEADLINE, ...options });
      await assert.rejects(connection.sendMessage('job:x'), (error) => {
        assert.ok(error instanceof berrymq.TransportError, String(error));
        assert.equal(error.message, `${fake.url} answered a body of over ${limit} bytes, the limit of what is read of one ` +
          `answer (4 x max(maxSize, 1 MiB) = 4 x ${limit / 4}); the rest was not read, and the request was dropped`);
        return true;
      });
      assert.ok(written < 32 * MiB, `the client read on: ${written} bytes written`);
      assert.equal(connection.closed, false); // only that call failed
      await connection.close();
    }
  });

  it('over TCP, an answer line over 4x maxSize fails the calls waiting, naming the limit, and closes the connection', async () => {
    const fake = await fakeTcpNode((request, socket) => {
      socket.write(`{"jsonrpc":"2.0","result":"${'a'.repeat(5 * 1024 * 1024)}`); // and no end of line
    });
    fakes.push(fake);
    const connection = await berrymq.connectOneway(fake.url, { timeout: DEADLINE, maxSize: 4096 });
    await assert.rejects(connection.sendMessage('job:x'), (error) => {
      assert.ok(error instanceof berrymq.ConnectionClosed, String(error));
      assert.match(error.message, new RegExp(`^${fake.url} sent a line over the limit of 4194304 bytes ` +
        '\\(an answer: 4 x max\\(maxSize, 1 MiB\\) = 4 x 1048576; \\d+ bytes read of it\\); connection closed$'));
      return true;
    });
    assert.equal(connection.closed, true);
  });
});

describe('a node whose max_size is larger than the client\'s maxSize', { timeout: 6 * DEADLINE }, () => {
  let node;
  const big = 'x'.repeat(9000000); // a 9 MB message: over the 4 MiB a default client reads

  before(async () => { node = await startNode({ settings: { max_size: 16777216 } }); });

  after(async () => {
    await berrymq.closeConnection().catch(() => {});
    await node.stop();
  });

  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: a queue opened with the default maxSize gets no message larger: the sender is refused, nothing lost`, async () => {
      const queue = await berrymq.connectViaQueue(node[scheme], 'bulk:*', { ttl: 60 });
      const sender = await berrymq.connectOneway(node[scheme], { ttl: 60, maxSize: 16 * MiB });
      await assert.rejects(sender.sendMessage('bulk:one', [big]), (error) => {
        assert.ok(error instanceof berrymq.QueueFull, String(error));
        assert.equal(error.code, berrymq.codes.QUEUE_FULL);
        assert.equal(error.data.setting, 'max_size');
        return true;
      });
      assert.equal(await sender.sendMessage('bulk:small', ['s']), 'ok');
      assert.deepEqual((await queue.get({ timeout: 5 })).args, ['s']);
      await assert.rejects(queue.getNowait(), berrymq.Empty);
      assert.equal(queue.closed, false);
      await queue.close();
      await sender.close();
    });

    it(`over ${scheme}: a queue opened with maxSize 16 MiB gets the 9 MB message`, async () => {
      const queue = await berrymq.connectViaQueue(node[scheme], 'bulk:*', { ttl: 60, maxSize: 16 * MiB });
      const sender = await berrymq.connectOneway(node[scheme], { ttl: 60, maxSize: 16 * MiB });
      assert.equal(await sender.sendMessage('bulk:one', [big]), 'ok');
      const message = await queue.get({ timeout: 5 });
      assert.equal(message.id, 'bulk:one');
      assert.equal(message.args[0].length, big.length);
      await queue.close();
      await sender.close();
    });
  }

  it('over tcp: an interconnection gets what its maxSize allows, and no larger message ends it', async () => {
    const sender = await berrymq.connectOneway(node.tcp, { ttl: 60, maxSize: 16 * MiB });
    for (const [options, getsBig] of [[{}, false], [{ maxSize: 16 * MiB }, true]]) {
      const inbox = new Inbox('messages to the link');
      const link = await berrymq.interconnect(node.tcp, (m) => inbox.put(m), { ttl: 60, ...options });
      await sender.sendMessage('bulk:one', [big]);
      await sender.sendMessage('bulk:small', ['s']);
      if (getsBig) {
        const message = await inbox.next();
        assert.equal(message.id, 'bulk:one');
        assert.equal(message.args[0].length, big.length);
      }
      assert.deepEqual((await inbox.next()).args, ['s']);
      assert.equal(link.closed, false);
      await link.close();
    }
    await sender.close();
  });
});
