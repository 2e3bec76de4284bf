'use strict';
/** The programs of the walk-through (docs/clients/node.md) and of the README run as
 * written, against a real Python node, and print what the pages show. (The walk-through
 * only in a checkout: it is not in the npm package.) Their URLs are swapped for the test
 * node's free ports. */

const assert = require('assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, start, startNode } = require('./helpers');

const PAGE = path.join(__dirname, '..', '..', '..', '..', 'docs', 'clients', 'node.md');
const skip = fs.existsSync(PAGE) ? false : `${PAGE} is not here (not a checkout of berryMQ)`;

describe('docs/clients/node.md', { skip, timeout: 6 * DEADLINE }, () => {
  let node;
  let dir;
  let sender;
  const programs = {};

  before(async () => {
    node = await startNode();
    sender = await berrymq.connectOneway(node.tcp, { ttl: 60 }); // plays the page's Python side
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berrymq-docs-'));
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(path.join(__dirname, '..'), path.join(dir, 'node_modules', 'berrymq'), 'dir');
    const programsOf = (file) => [...fs.readFileSync(file, 'utf8').matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
    const blocks = programsOf(PAGE);
    assert.equal(blocks.length, 3, 'the page has three programs');
    blocks.push(programsOf(path.join(__dirname, '..', 'README.md'))[0]);
    ['oneway', 'queue', 'interconnect', 'readme'].forEach((name, i) => {
      const code = blocks[i].replaceAll('tcp://127.0.0.1:7000', node.tcp).replaceAll('http://127.0.0.1:8000', node.http);
      fs.writeFileSync(path.join(dir, `${name}.js`), code);
      programs[name] = path.join(dir, `${name}.js`);
    });
  });

  after(async () => {
    await berrymq.closeConnection();
    await node.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const run = (name) => start([process.execPath, programs[name]], { what: name });

  it('large integers: what the page and the README say of 2**53 + 1 is what happens', async () => {
    const said = '`2**53 + 1` (9007199254740993) arrives as 9007199254740992';
    assert.ok(fs.readFileSync(PAGE, 'utf8').includes(said), `the page says ${said}`);
    const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8').replace(/\n/g, ' ');
    assert.ok(readme.includes("a Python node's `2**53 + 1` (9007199254740993) arrives as 9007199254740992"));
    assert.deepEqual(await sender.ask('big:int'), [9007199254740992]);
  });

  it('style 02: oneway.js sends and prints the reply of price:quote', async () => {
    const program = run('oneway');
    assert.equal(await program.stdout.next(), '[ 19 ]');
    assert.equal(await program.exited, 0);
  });

  it('style 03: queue.js prints what reaches the queue, and Ctrl-C stops it', async () => {
    const program = run('queue');
    try {
      assert.equal(await program.stdout.next(), 'waiting for job:* messages; Ctrl-C stops');
      await sender.sendMessage('job:start', [42], { user: 'bob' });
      assert.equal(await program.stdout.next(), "node.js got job:start [ 42 ] { user: 'bob' }");
      program.child.kill('SIGINT');
      assert.equal(await program.exited, 0);
    } finally {
      program.child.kill();
    }
  });

  it('style 01: interconnect.js sends, prints what the node forwards, answers its asks', async () => {
    const program = run('interconnect');
    try {
      assert.equal(await program.stdout.next(), 'interconnected; Ctrl-C stops');
      await sender.sendMessage('chat:reply', ['hello from Python']);
      assert.equal(await program.stdout.next(), "node.js got chat:reply [ 'hello from Python' ] {}");
      await sender.sendMessage('relay:ask', ['js:question', 'ping']); // the node asks its peers
      assert.equal(await program.stdout.next(), "node.js got relay:ask [ 'js:question', 'ping' ] {}");
      assert.equal(await program.stdout.next(), "node.js got relay:answer [ [ 'node.js heard ping' ] ] {}");
      program.child.kill('SIGINT');
      assert.equal(await program.exited, 0);
    } finally {
      program.child.kill();
    }
  });

  it('the README\'s program prints the message it pulled and the reply to its ask', async () => {
    const program = run('readme');
    assert.equal(await program.stdout.next(), "{ id: 'job:started', args: [ 42 ], kwargs: {}, extras: {} }");
    assert.equal(await program.stdout.next(), '[ 19 ]');
    assert.equal(await program.exited, 0);
  });
});

describe('what sendMessage\'s "ok" means', { skip }, () => {
  // docs/delivery.md: the node may answer "ok" as soon as it read and checked a message
  // that nothing there can refuse, its receivers running just after; no page may say more
  const pages = { 'docs/clients/node.md': PAGE, 'README.md': path.join(__dirname, '..', 'README.md'),
    'berrymq.js': path.join(__dirname, '..', 'berrymq.js') };
  for (const [name, file] of Object.entries(pages)) {
    it(`${name} says the node accepted the message, not that its receivers have it`, () => {
      const text = fs.readFileSync(file, 'utf8').replace(/\s+/g, ' ');
      assert.doesNotMatch(text, /"ok"[^.]*once the node's receivers (and queues )?have/);
      assert.match(text, /"ok"`? once the node accepted (it|the message)/);
      assert.match(text, /receivers run in the order (the|this) connection sent its messages/);
    });
  }
});
