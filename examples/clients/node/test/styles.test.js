'use strict';
/** The three styles and ask, over TCP and over HTTP, against a real Python node; what
 * the node received is read from its own output (`--print`). */

const assert = require('assert/strict');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, Inbox, startNode } = require('./helpers');

let node;
before(async () => { node = await startNode(); });
after(async () => { await berrymq.closeConnection(); await node.stop(); });

for (const scheme of ['tcp', 'http']) {
  const url = () => node[scheme];

  describe(`over ${scheme}`, { timeout: 4 * DEADLINE }, () => {
    it('style 02: connectOneway and sendMessage reach the Python node\'s receivers', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      assert.equal(oneway.style, 'oneway');
      assert.match(oneway.token, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(await oneway.sendMessage('node:hello', ['from node', 1], { lang: 'js' }), 'ok');
      assert.equal(await node.stdout.next(), 'node:hello ["from node", 1] {"lang": "js"}');
      await oneway.postMessage('node:note', [2]); // a notification: no answer
      assert.equal(await oneway.sendMessages([['node:batch', [3], {}], ['node:batch', [4], {}]]), 'ok');
      assert.equal(await node.stdout.next(), 'node:note [2]');
      assert.equal(await node.stdout.next(), 'node:batch [3]');
      assert.equal(await node.stdout.next(), 'node:batch [4]');
      await oneway.close();
      assert.equal(oneway.closed, true);
      await assert.rejects(oneway.sendMessage('node:late'), berrymq.ConnectionClosed);
    });

    it('style 03: connectViaQueue, get and getNowait', async () => {
      const queue = await berrymq.connectViaQueue(url(), 'job:*', { ttl: 60 });
      const sender = await berrymq.connectOneway(url(), { ttl: 60 });
      await sender.sendMessage('job:one', [1], { fast: true });
      await sender.sendMessage('other:thing', [2]); // does not match job:*
      await queue.sendMessage('job:two', ['from the queue connection']); // it can send too
      assert.deepEqual(await queue.get({ timeout: 10 }),
        { id: 'job:one', args: [1], kwargs: { fast: true }, extras: {} });
      assert.deepEqual(await queue.getNowait(),
        { id: 'job:two', args: ['from the queue connection'], kwargs: {}, extras: {} });
      await assert.rejects(queue.getNowait(), berrymq.Empty);
      const started = Date.now();
      await assert.rejects(queue.get({ timeout: 0.3 }), (error) => error instanceof berrymq.Empty && error.code === -32002);
      assert.ok(Date.now() - started >= 250, 'get waited its timeout');
      // a get that is waiting when the message comes
      const waiting = queue.get({ timeout: 10 });
      await sender.sendMessage('job:three');
      assert.equal((await waiting).id, 'job:three');
      await berrymq.closeConnection(sender);
      await berrymq.closeConnection(queue);
    });

    it('style 03: for await over the queue, ended by closing it while a get waits', async () => {
      const queue = await berrymq.connectViaQueue(url(), 'loop:*', { ttl: 60 });
      const sender = await berrymq.connectOneway(url(), { ttl: 60 });
      const inbox = new Inbox('messages of the loop');
      const loop = (async () => { for await (const message of queue) inbox.put(message.id); })();
      await sender.sendMessage('loop:one');
      await sender.sendMessage('loop:two');
      assert.equal(await inbox.next(), 'loop:one');
      assert.equal(await inbox.next(), 'loop:two');
      await queue.close(); // the loop is waiting in a get: it ends without an error
      await loop;
      await sender.close();
    });

    it('style 03 through the module-level functions, as in Python', async () => {
      await berrymq.connectViaQueue(url(), 'task:*', { ttl: 60 });
      await berrymq.connectOneway(url(), { ttl: 60 }); // the most recent: sendMessage uses it
      assert.equal(await berrymq.sendMessage('task:run', ['a']), 'ok');
      assert.deepEqual((await berrymq.get({ timeout: 10 })).args, ['a']); // the queue connection
      await assert.rejects(berrymq.getNowait(), berrymq.Empty);
      await berrymq.closeConnection(url());
      assert.equal(berrymq.connections.filter((c) => c.url === url()).length, 0);
      await assert.rejects(berrymq.sendMessage('task:run'), /no connection is open/);
    });

    it('style 01: interconnect carries both directions, and the node asks us', async () => {
      const inbox = new Inbox('messages forwarded to the client');
      const asked = [];
      const link = await berrymq.interconnect(url(), (message) => inbox.put(message), {
        ttl: 60, onAsk: (message) => { asked.push(message); return `node.js saw ${message.id}`; },
      });
      assert.equal(link.style, 'interconnect');
      // Node.js -> Python
      assert.equal(await link.sendMessage('node:joined', ['interconnect']), 'ok');
      assert.equal(await node.stdout.next(), 'node:joined ["interconnect"]');
      // Python -> Node.js: a message that reaches the node from another client is forwarded
      const other = await berrymq.connectOneway(url(), { ttl: 60 });
      await other.sendMessage('news:flash', ['hi'], { n: [1, 2] });
      assert.equal(await node.stdout.next(), 'news:flash ["hi"] {"n": [1, 2]}');
      const flash = await inbox.next();
      // node:joined came from us, so the node did not send it back: news:flash is first
      assert.deepEqual([flash.id, flash.args, flash.kwargs], ['news:flash', ['hi'], { n: [1, 2] }]);
      assert.equal(typeof flash.extras.uid, 'string');
      // the Python node asks its peers (us) and tells us the replies
      await other.sendMessage('relay:ask', ['js:question', 7]);
      assert.equal((await inbox.next()).id, 'relay:ask'); // forwarded to us like any other
      const answer = await inbox.next();
      assert.equal(answer.id, 'relay:answer');
      assert.deepEqual(answer.args, [['node.js saw js:question']]);
      assert.deepEqual(asked.map((m) => [m.id, m.args]), [['js:question', [7]]]);
      await other.close();
      await link.close();
    });

    it('ask: the replies of the Python node\'s receivers, failures as ReplyError', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      assert.deepEqual(await oneway.ask('price:quote', [2], {}, { timeout: 5 }), [19]);
      assert.deepEqual(await berrymq.ask('nobody:listens'), []);
      const [failure] = await oneway.ask('fail:now');
      assert.ok(failure instanceof berrymq.ReplyError);
      assert.equal(failure.type, 'ValueError');
      assert.match(failure.message, /refused on purpose/);
      await oneway.close();
    });
  });
}
