'use strict';
/** What is refused before it is sent (a message over the node's size limit, numbers that
 * are not JSON), what the node refuses without knowing which request it answers (`id`
 * null), and a connection the node closed: each a defined error, at once, against a real
 * Python node. */

const assert = require('assert/strict');
const { after, before, describe, it } = require('node:test');
const vm = require('vm');
const berrymq = require('..');
const { DEADLINE, startNode } = require('./helpers');

const { codes } = berrymq;

let node;
before(async () => { node = await startNode(); });
after(async () => { await berrymq.closeConnection(); await node.stop(); });

for (const scheme of ['tcp', 'http']) {
  const url = () => node[scheme];

  describe(`over ${scheme}`, { timeout: 4 * DEADLINE }, () => {
    it('a message over the size limit is MessageTooLarge, not sent; the connection stays usable', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      let ended = 'pending';
      oneway.ended.then((value) => { ended = value; });
      await assert.rejects(oneway.sendMessage('big:x', ['x'.repeat(2 * 1024 * 1024)]), (error) =>
        error instanceof berrymq.MessageTooLarge && error instanceof berrymq.BerryMQError &&
        error.code === codes.TOO_LARGE && error.data.limit === berrymq.MAX_SIZE - 512 &&
        /message big:x of \d+ bytes of JSON .* is over the limit of 1048064 bytes .*; it was not sent/.test(error.message));
      // a whole request over maxSize, of messages each within theirs
      await assert.rejects(oneway.sendMessages([['big:x', ['y'.repeat(600000)], {}], ['big:y', ['z'.repeat(600000)], {}]]),
        (error) => error instanceof berrymq.MessageTooLarge && error.data.limit === berrymq.MAX_SIZE &&
          /a send_messages request of \d+ bytes is over the limit of 1048576 bytes; it was not sent/.test(error.message));
      await assert.rejects(oneway.ask('big:x', ['x'.repeat(1100000)]), berrymq.MessageTooLarge);
      assert.equal(oneway.closed, false);
      assert.equal(await oneway.sendMessage('node:after-big', [1]), 'ok');
      assert.equal(await node.stdout.next(), 'node:after-big [1]');
      // just under the limit goes
      assert.equal(await oneway.sendMessage('big:fits', ['x'.repeat(1024 * 1024 - 1000)]), 'ok');
      assert.equal(ended, 'pending');
      await oneway.close();
    });

    it("a message over maxSize less 512 (what a node can forward), room kept for its uid: MessageTooLarge naming the limit", async () => {
      // ["big:edge",["x...x"],{}] is n + 20 bytes of JSON, and 31 are kept for a uid
      const fits = 1048576 - 512 - 20 - 31;
      for (const options of [{}, { maxSize: 1048576 }]) {
        const oneway = await berrymq.connectOneway(url(), { ttl: 60, ...options });
        assert.equal(await oneway.sendMessage('big:edge', ['x'.repeat(fits)]), 'ok');
        await assert.rejects(oneway.sendMessage('big:edge', ['x'.repeat(fits + 1)]), (error) =>
          error instanceof berrymq.MessageTooLarge && error.code === codes.TOO_LARGE &&
          JSON.stringify(error.data) === JSON.stringify({ limit: 1048064, setting: 'max_size', size: 1048065 }) &&
          error.message === 'Message too large (-32003): message big:edge of 1048065 bytes of JSON (with 31 for its uid) is over ' +
            "the limit of 1048064 bytes (maxSize 1048576, the node's max_size, less 512 for the request around it); " +
            'it was not sent');
        await assert.rejects(oneway.postMessage('big:edge', [], { k: 'x'.repeat(fits) }), berrymq.MessageTooLarge);
        await assert.rejects(oneway.sendMessages([['big:edge', ['x'.repeat(fits + 1)], {}]]), berrymq.MessageTooLarge);
        await oneway.close();
      }
      // a smaller maxSize, the node's own when it has a smaller max_size
      const small = await berrymq.connectOneway(url(), { ttl: 60, maxSize: 4096 });
      await assert.rejects(small.sendMessage('big:edge', ['x'.repeat(4096 - 512 - 20 - 31 + 1)]),
        (error) => error instanceof berrymq.MessageTooLarge && error.data.limit === 3584);
      assert.equal(await small.sendMessage('big:edge', ['x'.repeat(4096 - 512 - 20 - 31)]), 'ok');
      await small.close();
      // the smallest maxSize is a node's smallest max_size, 1024: below it no message has room
      for (const maxSize of [1023, 512, 0, 2048.5, '4096']) {
        await assert.rejects(berrymq.connectOneway(url(), { ttl: 60, maxSize }), (error) => error instanceof TypeError &&
          error.message === "'maxSize' must be an integer of at least 1024 bytes (a message may take maxSize less the " +
            `512 bytes of the request around it), got ${maxSize}`);
      }
      const smallest = await berrymq.connectOneway(url(), { ttl: 60, maxSize: 1024 });
      assert.equal(await smallest.sendMessage('big:edge', ['x'.repeat(1024 - 512 - 20 - 31)]), 'ok');
      await smallest.close();
    });

    it('NaN and Infinity in args or kwargs: TypeError naming where, nothing sent', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      const notJson = (where) => (error) => error instanceof TypeError &&
        error.message.includes(`(at ${where} of a `) && /not JSON.*nothing was sent/.test(error.message);
      await assert.rejects(oneway.sendMessage('node:nan', [NaN]), notJson('params.args[0]'));
      await assert.rejects(oneway.sendMessage('node:nan', [], { x: Infinity }), notJson('params.kwargs.x'));
      await assert.rejects(oneway.sendMessage('node:nan', [{ a: [1, -Infinity] }]), notJson('params.args[0].a[1]'));
      await assert.rejects(oneway.postMessage('node:nan', [NaN]), TypeError);
      await assert.rejects(oneway.sendMessages([['node:nan', [1], {}], ['node:nan', [NaN], {}]]),
        notJson('params.messages[1][1][0]'));
      await assert.rejects(oneway.ask('price:quote', [NaN]), TypeError);
      await assert.rejects(berrymq.connectOneway(url(), { ttl: NaN }), notJson('params.ttl'));
      const channel = await berrymq.connect(url());
      try {
        await assert.rejects(channel.call('connect_oneway', { ttl: Infinity }), TypeError);
        await assert.rejects(channel.batch([{ method: 'connect_oneway', params: { ttl: NaN } }]), TypeError);
      } finally {
        await channel.close();
      }
      assert.equal(await oneway.sendMessage('node:after-nan', [1.5]), 'ok');
      assert.equal(await node.stdout.next(), 'node:after-nan [1.5]'); // none of the above came
      await oneway.close();
    });

    it('undefined in an array, a function, a symbol, a Map or a Set: TypeError naming where, nothing sent; a Date goes as its toJSON text', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      const refused = (what, where, why) => (error) => {
        assert.ok(error instanceof TypeError, String(error));
        assert.equal(error.message, `${what} cannot be sent (at ${where} of a send_message request): ${why}; nothing was sent`);
        return true;
      };
      const fn = 'JSON has no functions';
      const sym = 'JSON has no symbols';
      const entries = 'JSON.stringify would write it as {}, without its entries (send an array or a plain object)';
      await assert.rejects(oneway.sendMessage('node:bad', [1, undefined]), refused('undefined', 'params.args[1]',
        'JSON has no undefined, and JSON.stringify would write null for it'));
      await assert.rejects(oneway.sendMessage('node:bad', [() => 1]), refused('a function', 'params.args[0]', fn));
      await assert.rejects(oneway.sendMessage('node:bad', [{ f: [() => 1] }]), refused('a function', 'params.args[0].f[0]', fn));
      await assert.rejects(oneway.sendMessage('node:bad', [Symbol('s')]), refused('Symbol(s)', 'params.args[0]', sym));
      await assert.rejects(oneway.sendMessage('node:bad', [{ s: [Symbol('t')] }]), refused('Symbol(t)', 'params.args[0].s[0]', sym));
      await assert.rejects(oneway.sendMessage('node:bad', [new Map([['a', 1]])]), refused('a Map', 'params.args[0]', entries));
      await assert.rejects(oneway.sendMessage('node:bad', [], { s: new Set([1]) }), refused('a Set', 'params.kwargs.s', entries));
      await assert.rejects(oneway.postMessage('node:bad', [undefined]), TypeError);
      await assert.rejects(oneway.sendMessages([['node:ok', [], {}], ['node:bad', [() => 1], {}]]), TypeError);
      await assert.rejects(oneway.ask('price:quote', [new Set()]), TypeError);
      // an object's member that is undefined is left out, as JSON.stringify leaves it out
      assert.equal(await oneway.sendMessage('node:after-bad', [new Date(0)], { gone: undefined, d: { when: new Date(0) } }), 'ok');
      // none of the above came
      assert.equal(await node.stdout.next(),
        'node:after-bad ["1970-01-01T00:00:00.000Z"] {"d": {"when": "1970-01-01T00:00:00.000Z"}}');
      await oneway.close();
    });

    it("a function or a symbol as an object's member is left out, as JSON.stringify leaves it out: a class instance " +
       'with an arrow-function field or a method goes as its other members', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      class Order {
        id = 7;
        format = () => `order ${this.id}`;
        describe() { return 'an order'; }
      }
      assert.equal(await oneway.sendMessage('node:members', [new Order(), { f() {}, a: 1, s: Symbol('s') }],
        { run: () => 1, s: Symbol('t'), n: 2 }), 'ok');
      assert.equal(await node.stdout.next(), 'node:members [{"id": 7}, {"a": 1}] {"n": 2}');
      assert.equal(await oneway.sendMessages([['node:members', [new Order()], { f() {} }]]), 'ok');
      assert.equal(await node.stdout.next(), 'node:members [{"id": 7}]');
      await oneway.close();
    });

    it('a Map, a Set, a WeakMap or a WeakSet of another realm, and a Number object of NaN or Infinity: ' +
       'TypeError naming where, nothing sent', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      const refused = (what, where, why) => (error) => {
        assert.ok(error instanceof TypeError, String(error));
        assert.equal(error.message, `${what} cannot be sent (at ${where} of a send_message request): ${why}; nothing was sent`);
        return true;
      };
      const entries = 'JSON.stringify would write it as {}, without its entries (send an array or a plain object)';
      const realm = (code) => vm.runInNewContext(code);
      await assert.rejects(oneway.sendMessage('node:bad', [realm("new Map([['a', 1]])")]), refused('a Map', 'params.args[0]', entries));
      await assert.rejects(oneway.sendMessage('node:bad', [], { s: realm('new Set([1])') }), refused('a Set', 'params.kwargs.s', entries));
      await assert.rejects(oneway.sendMessage('node:bad', [1, { w: realm('new WeakMap()') }]),
        refused('a WeakMap', 'params.args[1].w', entries));
      await assert.rejects(oneway.sendMessage('node:bad', [realm('new WeakSet()')]), refused('a WeakSet', 'params.args[0]', entries));
      await assert.rejects(oneway.sendMessage('node:bad', [], realm("new Map([['a', 1]])")), refused('a Map', 'params.kwargs', entries));
      await assert.rejects(oneway.sendMessage('node:bad', [new Number(NaN)]),
        refused('NaN (a Number object)', 'params.args[0]', 'NaN and Infinity are not JSON'));
      await assert.rejects(oneway.sendMessage('node:bad', [], { x: Object(-Infinity) }),
        refused('-Infinity (a Number object)', 'params.kwargs.x', 'NaN and Infinity are not JSON'));
      await assert.rejects(oneway.sendMessage('node:bad', [realm('new Number(Infinity)')]),
        refused('Infinity (a Number object)', 'params.args[0]', 'NaN and Infinity are not JSON'));
      await assert.rejects(oneway.sendMessages([['node:ok', [], {}], ['node:bad', [], realm('new Set()')]]), TypeError);
      await assert.rejects(oneway.ask('price:quote', [new Number(NaN)]), TypeError);
      // a Number object of a finite number goes as that number, as JSON.stringify writes it
      assert.equal(await oneway.sendMessage('node:after-realm', [new Number(1.5), realm('new Number(2)')]), 'ok');
      assert.equal(await node.stdout.next(), 'node:after-realm [1.5, 2]'); // none of the above came
      await oneway.close();
    });

    it('a message nested deeper than 124 levels: TypeError naming the limit, nothing sent', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      const nest = (levels) => { let value = []; for (let i = 1; i < levels; i += 1) value = [value]; return value; };
      const tooDeep = (error) => error instanceof TypeError &&
        /^message node:deep cannot be sent: it is nested more than 124 levels deep, the limit/.test(error.message);
      // [identifier, args, kwargs]: args (level 2) holding 123 levels is the deepest that goes
      assert.equal(await oneway.sendMessage('node:deep', nest(123)), 'ok');
      assert.match(await node.stdout.next(), /^node:deep \[\[\[/);
      await assert.rejects(oneway.sendMessage('node:deep', nest(124)), tooDeep);
      await assert.rejects(oneway.sendMessage('node:deep', [], { a: nest(123) }), tooDeep);
      await assert.rejects(oneway.postMessage('node:deep', nest(124)), tooDeep);
      await assert.rejects(oneway.sendMessages([['node:ok', [], {}], ['node:deep', nest(200), {}]]), tooDeep);
      await assert.rejects(oneway.ask('node:deep', nest(124)), tooDeep);
      // so deep that JSON.stringify runs out of stack: named as too deep all the same
      await assert.rejects(oneway.sendMessage('node:deep', nest(200000)), tooDeep);
      // brackets inside strings do not count
      assert.equal(await oneway.sendMessage('node:brackets', ['['.repeat(300)]), 'ok');
      assert.equal(await node.stdout.next(), `node:brackets ["${'['.repeat(300)}"]`);
      assert.equal(oneway.closed, false);
      await oneway.close();
    });

    it('closeConnection(url) closes the connections to the node however the URL is written', async () => {
      const oneway = await berrymq.connectOneway(url(), { ttl: 60 });
      const other = await berrymq.connectOneway(scheme === 'tcp' ? node.http : node.tcp, { ttl: 60 });
      await berrymq.closeConnection(`${url()}/`);
      assert.equal(oneway.closed, true);
      assert.equal(other.closed, false);
      await other.close();
    });

    it('a reply with id null (Invalid Request) settles the batch or the call it answers at once', async () => {
      const channel = await berrymq.connect(url(), { timeout: 4 * DEADLINE });
      try {
        const start = Date.now();
        const invalidBecause = (data) => ({ jsonrpc: '2.0', error: { code: codes.INVALID_REQUEST, message: 'Invalid Request', data }, id: null });
        const invalid = invalidBecause('the params member must be an array or an object');
        assert.deepEqual(await channel.batch([{ method: 'connect_oneway', params: 5 }]), [invalid]);
        assert.deepEqual(await channel.batch([]), invalidBecause('an empty batch: send at least one request'));
        await assert.rejects(channel.call('connect_oneway', 5), { code: codes.INVALID_REQUEST });
        // an invalid notification is answered too: that answer is tied to it, not to the next call
        // (and notify resolves with nothing, as over TCP: the node answers notifications nothing)
        assert.equal(await channel.notify('connect_oneway', 5), undefined);
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

describe('a connection the node closed', { timeout: 4 * DEADLINE }, () => {
  it('over tcp: the refused call is MessageTooLarge, then ended and every later call is ConnectionClosed', async () => {
    // a client limit above the node's: the node refuses the line and closes the connection
    const oneway = await berrymq.connectOneway(node.tcp, { ttl: 60, maxSize: 4 * 1024 * 1024 });
    await assert.rejects(oneway.sendMessage('big:x', ['x'.repeat(2 * 1024 * 1024)]), (error) =>
      error instanceof berrymq.MessageTooLarge && error.code === codes.TOO_LARGE && error.data.setting === 'max_size');
    const ended = await oneway.ended;
    assert.ok(ended instanceof berrymq.ConnectionClosed, String(ended));
    assert.match(ended.message, /closed.*Message too large \(-32003\)/);
    assert.equal(oneway.closed, true);
    for (let i = 0; i < 2; i += 1) {
      await assert.rejects(oneway.sendMessage('node:small', [i]), berrymq.ConnectionClosed);
    }
    await oneway.close();
  });

  it('over http: the node answers 413 and the connection stays usable', async () => {
    const oneway = await berrymq.connectOneway(node.http, { ttl: 60, maxSize: 4 * 1024 * 1024 });
    await assert.rejects(oneway.sendMessage('big:x', ['x'.repeat(2 * 1024 * 1024)]),
      (error) => error instanceof berrymq.MessageTooLarge && error.code === codes.TOO_LARGE);
    assert.equal(await oneway.sendMessage('node:after-413', [2]), 'ok');
    assert.equal(await node.stdout.next(), 'node:after-413 [2]');
    await oneway.close();
  });

  it('over http: a body far over the node\'s limit (5 MB) is MessageTooLarge too, every time, and the connection stays usable', async () => {
    // sent whole, the node stops reading it and closes: its 413 could be lost to the reset
    const oneway = await berrymq.connectOneway(node.http, { ttl: 60, maxSize: 6 * 1024 * 1024 });
    try {
      const big = 'x'.repeat(5 * 1024 * 1024);
      for (let i = 0; i < 16; i += 1) { // (sent whole, about one in three lost the 413)
        await assert.rejects(oneway.sendMessage('big:x', [big]), (error) => error instanceof berrymq.MessageTooLarge &&
          error.code === codes.TOO_LARGE && error.data.setting === 'max_size');
        assert.equal(oneway.closed, false);
      }
      assert.equal(await oneway.sendMessage('node:after-5mb', [3]), 'ok');
      assert.equal(await node.stdout.next(), 'node:after-5mb [3]');
    } finally {
      await oneway.close();
    }
  });
});
