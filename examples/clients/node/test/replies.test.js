'use strict';
/** What an interconnected client answers a real node's asks with when onAsk returns what
 * cannot cross (not JSON, nested too deep), and the uids it keeps for the whole process:
 * each over TCP and HTTP, the node asking through its relay:ask receiver. */

const assert = require('assert/strict');
const { describe, it } = require('node:test');
const vm = require('vm');
const berrymq = require('..');
const uids = require('../lib/uids');
const { DEADLINE, Inbox, startNode } = require('./helpers');

/** Interconnect with a real node over `scheme` with `onAsk`, make the node ask us
 * (relay:ask) each of `identifiers` in turn, and resolve with the replies it twittered
 * (relay:answer), one list each; after each, check that the link still carries a message. */
async function askedByNode(scheme, identifiers, onAsk) {
  const node = await startNode();
  let link = null;
  try {
    const inbox = new Inbox('messages to the client');
    link = await berrymq.interconnect(node[scheme], (m) => inbox.put(m), { ttl: 60, onAsk });
    const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
    const answers = [];
    for (const [i, identifier] of identifiers.entries()) {
      await sender.sendMessage('relay:ask', [identifier]);
      let answer;
      do answer = await inbox.next(); while (answer.id !== 'relay:answer');
      answers.push(answer.args[0]);
      await sender.sendMessage('news:after', [i]);
      do answer = await inbox.next(); while (answer.id !== 'news:after');
      assert.deepEqual(answer.args, [i]);
    }
    await sender.close();
    return answers;
  } finally {
    if (link !== null) await link.close();
    await node.stop();
  }
}

for (const scheme of ['tcp', 'http']) {
  describe(`onAsk replies JSON cannot carry, over ${scheme}`, { timeout: 3 * DEADLINE }, () => {
    it('a BigInt, a cycle, a function: a TypeError entry each, and the link goes on', async () => {
      const cycle = { name: 'loop' };
      cycle.self = cycle;
      const replies = { 'js:big': 2n ** 64n, 'js:cycle': cycle, 'js:fn': () => 1 };
      const answers = await askedByNode(scheme, Object.keys(replies), (m) => replies[m.id]);
      assert.equal(answers.flat().length, 3, JSON.stringify(answers));
      assert.match(answers[0][0], /^error: .*TypeError.*the reply BigInt is not JSON \(Do not know how to serialize a BigInt\)/);
      assert.match(answers[1][0], /^error: .*TypeError.*the reply Object is not JSON \(Converting circular structure to JSON/);
      assert.match(answers[2][0], /^error: .*TypeError.*the reply function is not JSON/);
    });

    it('NaN, Infinity, and undefined, a function, a symbol or a Map inside: a TypeError entry each (not null), and the link goes on', async () => {
      const replies = {
        'js:nan': NaN, 'js:inf': Infinity, 'js:nested': { price: [1, -Infinity] }, 'js:undef': [1, undefined],
        'js:fn-element': [1, () => 1], 'js:symbol': [Symbol('s')], 'js:map': { m: new Map([['a', 1]]) },
      };
      const answers = await askedByNode(scheme, Object.keys(replies), (m) => replies[m.id]);
      assert.equal(answers.flat().length, 7, JSON.stringify(answers));
      const expected = [
        /the reply NaN is not JSON \(NaN and Infinity are not JSON\)/,
        /the reply Infinity is not JSON \(NaN and Infinity are not JSON\)/,
        /the reply Object is not JSON \(-Infinity at price\[1\]: NaN and Infinity are not JSON\)/,
        /the reply Array is not JSON \(undefined at \[1\]: JSON has no undefined/,
        /the reply Array is not JSON \(a function at \[1\]: JSON has no functions\)/,
        /the reply Array is not JSON \(Symbol\(s\) at \[0\]: JSON has no symbols\)/,
        /the reply Object is not JSON \(a Map at m: JSON.stringify would write it as \{\}/,
      ];
      for (const [i, pattern] of expected.entries()) {
        assert.equal(typeof answers[i][0], 'string', `${Object.keys(replies)[i]}: ${JSON.stringify(answers[i])}`);
        assert.match(answers[i][0], /^error: .*TypeError/);
        assert.match(answers[i][0], pattern);
      }
      // a Date is what its toJSON returns, as JSON.stringify writes it
      const [[date]] = await askedByNode(scheme, ['js:date'], () => new Date(0));
      assert.equal(date, '1970-01-01T00:00:00.000Z');
    });

    it("a function or a symbol as an object's member is left out, as JSON.stringify leaves it out: a class instance " +
       'with an arrow-function field or a method is answered as its other members', async () => {
      class Order {
        id = 7;
        format = () => `order ${this.id}`;
        describe() { return 'an order'; }
      }
      const replies = { 'js:instance': new Order(), 'js:members': { run: () => 1, method() {}, s: Symbol('s'), kept: [1] } };
      const answers = await askedByNode(scheme, Object.keys(replies), (m) => replies[m.id]);
      assert.deepEqual(answers, [[{ id: 7 }], [{ kept: [1] }]]);
    });

    it('a Map or a Set of another realm and a Number object of NaN: a TypeError entry each, as ours', async () => {
      const replies = {
        'js:realm-map': { m: vm.runInNewContext("new Map([['a', 1]])") }, 'js:realm-set': [vm.runInNewContext('new Set([1])')],
        'js:boxed-nan': { price: [1, new Number(NaN)] },
      };
      const answers = await askedByNode(scheme, Object.keys(replies), (m) => replies[m.id]);
      assert.equal(answers.flat().length, 3, JSON.stringify(answers));
      const expected = [
        /the reply Object is not JSON \(a Map at m: JSON.stringify would write it as \{\}/,
        /the reply Array is not JSON \(a Set at \[0\]: JSON.stringify would write it as \{\}/,
        /the reply Object is not JSON \(NaN \(a Number object\) at price\[1\]: NaN and Infinity are not JSON\)/,
      ];
      for (const [i, pattern] of expected.entries()) {
        assert.equal(typeof answers[i][0], 'string', `${Object.keys(replies)[i]}: ${JSON.stringify(answers[i])}`);
        assert.match(answers[i][0], /^error: .*TypeError/);
        assert.match(answers[i][0], pattern);
      }
    });
  });
}

/** An array nested `levels` deep. */
function nest(levels) {
  let value = [];
  for (let i = 1; i < levels; i += 1) value = [value];
  return value;
}

for (const scheme of ['tcp', 'http']) {
  describe(`onAsk replies nested too deep, over ${scheme}`, { timeout: 3 * DEADLINE }, () => {
    it('deeper than 124 levels (125, 200, 200 000): a TypeError entry naming the limit, and the link goes on', async () => {
      const replies = { 'js:deep': nest(125), 'js:deeper': nest(200), 'js:abyss': nest(200000) };
      const answers = await askedByNode(scheme, Object.keys(replies), (m) => replies[m.id]);
      assert.equal(answers.flat().length, 3, JSON.stringify(answers));
      for (const [answer] of answers) {
        assert.match(answer, /^error: .*TypeError.*the reply is nested more than 124 levels deep, the limit/);
      }
    });
  });
}

for (const scheme of ['tcp', 'http']) {
  describe(`uids for the whole process, over ${scheme}`, { timeout: 3 * DEADLINE }, () => {
    it('a message or an ask reaching two interconnections is delivered (answered) once; our own sends do not come back', async () => {
      const node = await startNode();
      const links = [];
      try {
        const inbox = new Inbox('messages to the client');
        const asked = [];
        const onAsk = (m) => { asked.push(m.id); return 'answered by this process'; };
        for (let i = 0; i < 2; i += 1) {
          links.push(await berrymq.interconnect(node[scheme], (m) => inbox.put([i, m.id, m.args]), { ttl: 60, onAsk }));
        }
        const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
        // the node forwards one message to both links, with one uid
        await sender.sendMessage('news:both', [1]);
        // what one link sends reaches the other (the node forwards it): not delivered back
        await links[0].sendMessage('news:mine', [2]);
        await links[0].postMessage('news:mine', [3]);
        await links[0].sendMessages([['news:mine', [4], {}]]);
        assert.equal(await node.stdout.next(), 'news:both [1]');
        for (const n of [2, 3, 4]) assert.equal(await node.stdout.next(), `news:mine [${n}]`);
        // the node asks each of its peers with one uid: this process answers once
        await sender.sendMessage('relay:ask', ['q:twice']);
        const got = [];
        const until = async (identifier) => {
          let each;
          do { each = await inbox.next(); got.push(each[1]); } while (each[1] !== identifier);
          return each[2];
        };
        assert.deepEqual(await until('relay:answer'), [['answered by this process']]);
        assert.deepEqual(asked, ['q:twice']);
        // a last message, to the second link alone: what it had before that came before
        await links[0].close();
        await sender.sendMessage('news:marker', [5]);
        await until('news:marker');
        // each once, and news:mine never came back
        assert.deepEqual(got, ['news:both', 'relay:ask', 'relay:answer', 'news:marker']);
        await sender.close();
      } finally {
        for (const link of links) await link.close();
        await node.stop();
      }
    });
  });
}

describe('the uids of the process (lib/uids.js)', () => {
  it('its own uids are known as such; the others once each; memory bounded', () => {
    const own = uids.newUid();
    assert.match(own, /^[A-Za-z0-9_-]{20}$/);
    assert.equal(own.slice(0, 8), uids.PREFIX);
    assert.equal(uids.firstTime(own), false);
    assert.equal(uids.firstTime(undefined), true);
    assert.equal(uids.firstTime('other-1'), true);
    assert.equal(uids.firstTime('other-1'), false);
    for (let i = 0; i < 3 * uids.SEEN_LIMIT; i += 1) uids.firstTime(`flood-${i}`);
    assert.ok(uids.remembered() <= 2 * uids.SEEN_LIMIT, `${uids.remembered()}`);
    assert.equal(uids.firstTime(`flood-${3 * uids.SEEN_LIMIT - 1}`), false, 'the newest are kept');
  });
});
