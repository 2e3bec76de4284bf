'use strict';
/** Timeouts: a call the node does not answer in time fails alone, with a TransportError,
 * and the connection goes on (over HTTP without cutting short the other calls in flight).
 * Against a real Python node, stopped with SIGSTOP for a while. */

const assert = require('assert/strict');
const net = require('net');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, startNode } = require('./helpers');

/** Rejects when `promise` has not settled within `ms` (a failing test ends, bounded). */
function within(promise, ms, what) {
  let timer;
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not settled within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Resolves once every thread of process `pid` is stopped (SIGSTOP reaches a process's
 * threads one by one: one busy on the other CPU may still answer a request just sent). */
async function stoppedWhole(pid) {
  const fs = require('fs');
  const deadline = Date.now() + DEADLINE;
  const stopped = () => fs.readdirSync(`/proc/${pid}/task`).every((task) => {
    const stat = fs.readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
  });
  while (!stopped()) {
    if (Date.now() > deadline) throw new Error(`process ${pid} not stopped within ${DEADLINE} ms`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

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
        await stoppedWhole(node.child.pid);
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

    it(`over ${scheme}: close and connect reject at the timeout their error names when the node stopped`, async () => {
      // (over TCP they rejected 1 s later: the channel then waited for the node, which
      // does not answer, to end its side of the connection)
      const node = await startNode();
      let stopped = false;
      try {
        const oneway = await berrymq.connectOneway(node[scheme], { ttl: 60, timeout: 1000 });
        node.child.kill('SIGSTOP');
        stopped = true;
        await stoppedWhole(node.child.pid);
        const said = scheme === 'tcp' ? `${node[scheme]} did not answer within 1000 ms` :
          `no answer from ${node[scheme]} within 1000 ms`;
        for (const [what, call] of [['close', () => oneway.close()],
          ['connectOneway', () => berrymq.connectOneway(node[scheme], { ttl: 60, timeout: 1000 })]]) {
          const start = Date.now();
          const [{ error }, ms] = await within(outcome(call(), start), DEADLINE, what);
          assert.ok(error instanceof berrymq.TransportError && !(error instanceof berrymq.ConnectionClosed), String(error));
          assert.equal(error.message, said, what);
          assert.ok(ms >= 950 && ms < 1600, `${what}: ${error.message} after ${ms} ms`);
        }
        assert.equal(oneway.closed, true);
        assert.equal(berrymq.connections.length, 0);
      } finally {
        if (stopped) node.child.kill('SIGCONT');
        await node.stop();
      }
    });
  }
});

describe('timeouts of 24.8 days or more (beyond what setTimeout keeps)', { timeout: 4 * DEADLINE }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(async () => { await berrymq.closeConnection(); await node.stop(); });

  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: an ask with a timeout of 2147474 s is answered, and the connection goes on`, async () => {
      const oneway = await berrymq.connectOneway(node[scheme], { ttl: 60 });
      try {
        assert.deepEqual(await oneway.ask('price:quote', [2], {}, { timeout: 2147474 }), [19]);
        assert.equal(oneway.closed, false);
        assert.equal(await oneway.sendMessage('node:after-long-ask'), 'ok');
      } finally {
        await oneway.close();
      }
    });

    it(`over ${scheme}: a get queued with a timeout of 3e6 s waits for its turn and gets its message`, async () => {
      const queue = await berrymq.connectViaQueue(node[scheme], 'long:*', { ttl: 60 });
      const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
      try {
        // 16 gets hold the connection's turns: the 17th is queued here, on its long timer
        const gets = [...Array(16).keys()].map(() => queue.get({ timeout: DEADLINE / 1000 }));
        const queued = queue.get({ timeout: 3e6 });
        for (const get of [...gets, queued]) get.catch(() => {}); // awaited below
        await sender.sendMessages([...Array(17).keys()].map((i) => [`long:${i}`, [i], {}]));
        const got = await Promise.all([...gets, queued]);
        assert.deepEqual(got.map((m) => m.args[0]).sort((a, b) => a - b), [...Array(17).keys()]);
      } finally {
        await sender.close();
        await queue.close();
      }
    });
  }

  it('a timeout that is not a finite number of seconds >= 0 is a TypeError naming it, nothing sent', async () => {
    const queue = await berrymq.connectViaQueue(node.tcp, 'bad:*', { ttl: 60 });
    try {
      for (const timeout of [Infinity, -Infinity, NaN, -1, '5']) {
        for (const [call, name] of [[() => queue.get({ timeout }), 'get'],
          [() => queue.ask('price:quote', [2], {}, { timeout }), 'ask']]) {
          await assert.rejects(call(), (error) => error instanceof TypeError &&
            error.message.startsWith(`${name}: 'timeout' must be a finite number of seconds >= 0, or null, not `));
        }
      }
      assert.equal(queue.closed, false);
      assert.deepEqual(await queue.ask('price:quote', [2], {}, { timeout: 5 }), [19]);
    } finally {
      await queue.close();
    }
  });
});

describe('over HTTP, a server that trickles its answer', { timeout: 2 * DEADLINE }, () => {
  it('the request fails at its timeout, whole: TransportError "no answer from URL within N ms"', async () => {
    const sockets = new Set();
    const server = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {}); // the client cuts it short: that is the point
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n');
        // the workload: one byte every 0.5 s, each within any per-read timeout
        const drip = setInterval(() => socket.write(' '), 500);
        socket.on('close', () => clearInterval(drip));
      });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${server.address().port}`;
    try {
      const start = Date.now();
      const [{ error }, ms] = await within(outcome(berrymq.connectOneway(url, { timeout: 1000 }), start), 8000,
        'connectOneway to a trickling server');
      assert.ok(error instanceof berrymq.TransportError && !(error instanceof berrymq.ConnectionClosed), String(error));
      assert.equal(error.message, `no answer from ${url} within 1000 ms`);
      assert.ok(ms >= 950, `${ms} ms`);
      assert.equal(berrymq.connections.length, 0);
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
    }
  });
});

describe('ask with timeout null', { timeout: 4 * DEADLINE }, () => {
  let node;
  before(async () => { node = await startNode(); });
  after(async () => { await node.stop(); });

  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: no deadline, not even the connection's timeout for an answer`, async () => {
      // the receiver takes 1 s; the connection waits 300 ms for an answer beyond what a
      // call asks the node to wait, and null asks for no limit at all
      const oneway = await berrymq.connectOneway(node[scheme], { ttl: 60, timeout: 300 });
      try {
        assert.deepEqual(await oneway.ask('slow:reply', [1], {}, { timeout: null }), ['slept']);
        assert.equal(oneway.closed, false);
      } finally {
        await oneway.close();
      }
    });
  }
});
