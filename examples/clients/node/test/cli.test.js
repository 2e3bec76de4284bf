'use strict';
/** The berrymq-js command against a real Python node, and its exit codes: 0 done, 1 the
 * run failed, 2 the command line is wrong. */

const assert = require('assert/strict');
const net = require('net');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { spawn } = require('child_process');
const { CLI, DEADLINE, freePort, runCli, startCli, startNode } = require('./helpers');

let node;
before(async () => { node = await startNode(); });
after(async () => { await berrymq.closeConnection(); await node.stop(); });

for (const scheme of ['tcp', 'http']) {
  const url = () => node[scheme];

  describe(`berrymq-js over ${scheme}`, { timeout: 4 * DEADLINE }, () => {
    it('selftest calls every method', async () => {
      const result = await runCli(['selftest', url()]);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.stdout.trimEnd().split('\n'), [
        'tokens: 43 and 43 characters',
        'send_message: ok',
        'send_messages: ok',
        'got node:hello ["from node",1] {"lang":"js"}',
        'got node:note [2]', // sent as a notification
        'got node:batch [3]',
        'got node:batch [4]',
        'error get_nowait: -32002 Queue is empty',
        'batch: 2 replies: "ok" ["node:in_batch",[5],{}]', // the notification got no reply
        'error unknown method: -32601 Method not found',
        'error local name: -32602 Invalid params',
        'error malformed token: -32008 Malformed token',
        'error no queue: -32006 Connection has no queue',
        'close_connection: ok',
        'error closed token: -32001 Unknown or expired token',
        'selftest passed',
      ]);
      // the Python node's receivers got what the Node.js client sent
      const seen = [];
      for (let i = 0; i < 6; i += 1) seen.push(await node.stdout.next());
      assert.deepEqual(seen, ['node:hello ["from node", 1] {"lang": "js"}', 'node:note [2]',
        'node:batch [3]', 'node:batch [4]', 'node:in_batch [5]', 'node:in_batch [6]']);
    });

    it('send and listen', async () => {
      const listener = startCli(['listen', url(), 'job:*', '--count', '2']);
      try {
        assert.equal(await listener.stderr.next(), `listening to job:* at ${url()}`);
        let result = await runCli(['send', url(), 'job:one', '1', '--kw', 'who=bob']);
        assert.equal(result.code, 0, result.stderr);
        result = await runCli(['send', url(), 'job:two', '[1,2]', 'text']);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(await listener.stdout.next(), 'job:one [1] {"who":"bob"}');
        assert.equal(await listener.stdout.next(), 'job:two [[1,2],"text"]');
        assert.equal(await listener.exited, 0);
      } finally {
        listener.child.kill();
      }
    });

    it('listen --json, stopped by SIGTERM with exit status 0', async () => {
      const listener = startCli(['listen', url(), 'job:*', '--json']);
      try {
        await listener.stderr.next();
        await runCli(['send', url(), 'job:three', '3']);
        assert.deepEqual(JSON.parse(await listener.stdout.next()), { id: 'job:three', args: [3], kwargs: {} });
        listener.child.kill('SIGTERM');
        assert.equal(await listener.exited, 0);
      } finally {
        listener.child.kill();
      }
    });

    it('interconnect prints what the node forwards and answers its asks', async () => {
      const client = startCli(['interconnect', url(), '--count', '3']);
      try {
        assert.equal(await client.stdout.next(), 'interconnected');
        assert.equal(await node.stdout.next(), 'node:joined ["interconnect"]');
        await runCli(['send', url(), 'news:flash', 'hi']);
        assert.equal(await node.stdout.next(), 'news:flash ["hi"]');
        assert.equal(await client.stdout.next(), 'news:flash ["hi"]');
        // the Python node asks its peers, the CLI among them, and tells everyone the replies
        await runCli(['send', url(), 'relay:ask', 'js:question']);
        assert.equal(await client.stdout.next(), 'relay:ask ["js:question"]');
        assert.equal(await client.stdout.next(), 'relay:answer [["node saw js:question"]]');
        assert.equal(await client.exited, 0);
      } finally {
        client.child.kill();
      }
    });

    it('ask prints the replies as JSON', async () => {
      let result = await runCli(['ask', url(), 'price:quote', '2', '--timeout', '5']);
      assert.deepEqual([result.code, result.stdout], [0, '[19]\n'], result.stderr);
      result = await runCli(['ask', url(), 'fail:now']);
      assert.equal(result.code, 0, result.stderr);
      const [reply] = JSON.parse(result.stdout);
      assert.deepEqual([reply.error.type, reply.error.message.includes('refused on purpose')], ['ValueError', true]);
    });

    it('an argument the node finds invalid: exit status 2, as the Python command, the node\'s reason on stderr', async () => {
      for (const [identifier, reason] of [['_local:x', "'_local:x' is local"], ['te*:b', "invalid identifier 'te\\*:b'"]]) {
        const result = await runCli(['send', url(), identifier]);
        assert.equal(result.code, 2, result.stderr);
        assert.match(result.stderr, new RegExp(`^berrymq-js: error: Invalid params \\(-32602\\): .*${reason}`));
      }
    });
  });
}

describe('berrymq-js exit codes', { timeout: 4 * DEADLINE }, () => {
  it('an unreachable node: exit status 1', async () => {
    const port = await freePort();
    for (const scheme of ['tcp', 'http']) {
      const result = await runCli(['send', `${scheme}://127.0.0.1:${port}`, 'job:x']);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, new RegExp(`^berrymq-js: error: cannot reach ${scheme}://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
    }
  });

  it('a wrong command line: exit status 2 and no connection', async () => {
    const port = await freePort(); // nothing listens: a usage error must be found first
    const url = `tcp://127.0.0.1:${port}`;
    const cases = [
      [[], 'a VERB is required'],
      [['publish', url, 'a:b'], 'unknown verb "publish"'],
      [['send'], 'send needs a URL'],
      [['send', url], 'send needs an ID'],
      [['listen', url], 'listen needs a PATTERN'],
      [['listen', url, 'a', 'b'], 'listen takes no more arguments'],
      [['send', 'ftp://127.0.0.1:1', 'a:b'], 'not a berryMQ address'],
      [['send', '127.0.0.1:7000', 'a:b'], 'not a berryMQ address'],
      [['listen', url, 'a:*', '--count', 'many'], '--count takes a whole number'],
      [['listen', url, 'a:*', '--count'], '--count needs a value'],
      [['send', url, 'a:b', '--kw', 'novalue'], '--kw takes KEY=VALUE'],
      [['send', url, 'a:b', '--count', '1'], 'send does not take --count'],
      [['send', url, 'a:b', '--verbose'], 'unknown option --verbose'],
      [['send', url, 'a:b', '1e400'], '"1e400" holds a number too large for JSON (it is not finite)'],
      [['ask', url, 'a:b', '--kw', 'k=[1,-1e999]'], '"[1,-1e999]" holds a number too large for JSON'],
      [['listen', url, 'a:*', '--count', '0'], '--count takes a whole number >= 1, not "0"'],
      [['interconnect', url, '--count', '0'], '--count takes a whole number >= 1, not "0"'],
    ];
    for (const [args, text] of cases) {
      const result = await runCli(args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.ok(result.stderr.startsWith(`berrymq-js: error: ${text}`), `${args.join(' ')}: ${result.stderr}`);
    }
  });

  it('an argument that is not UTF-8: exit status 2 naming it, nothing sent', async () => {
    const port = await freePort(); // nothing listens: the usage error must be found first
    // the byte 0xff as an argument as a shell passes it (spawn takes only strings)
    const result = await new Promise((resolve, reject) => {
      const child = spawn('sh', ['-c', 'exec "$0" "$1" send "$2" "$(printf \'a:b\\377\')"', process.execPath, CLI,
        `tcp://127.0.0.1:${port}`]);
      let stderr = '';
      child.stderr.on('data', (d) => { stderr += d; });
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stderr }));
    });
    assert.equal(result.code, 2, result.stderr);
    assert.equal(result.stderr, 'berrymq-js: error: argument 3 ("a:b\uFFFD") is not UTF-8 text: it has a byte that ' +
      'is not UTF-8 (or U+FFFD itself) (see berrymq-js --help)\n');
  });

  it('--help and --version: exit status 0', async () => {
    const help = await runCli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: berrymq-js VERB URL/);
    assert.match(help.stdout, /Exit status: 0 done, 1 the run failed \(unreachable node, refused request\), 2 usage error/);
    const version = await runCli(['--version']);
    assert.deepEqual([version.code, version.stdout], [0, `berrymq-js ${require('../package.json').version}\n`]);
  });
});

describe('berrymq-js send refused by a limit of the node', { timeout: 4 * DEADLINE }, () => {
  let small;
  before(async () => {
    small = await startNode({ settings: { max_size: 2000, max_connections_per_client: 2 } });
  });
  after(async () => { await small.stop(); });

  it("too large for the node: exit 1 naming the node's limit and its setting, not sent again", async () => {
    for (const scheme of ['tcp', 'http']) {
      const result = await runCli(['send', small[scheme], 'job:big', 'x'.repeat(3000)]);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, "berrymq-js: error: Message too large (-32003): the node's limit is 2000 bytes " +
        '(setting max_size); not sent again: it would be refused the same, whenever it came (send less)\n');
    }
  });

  it('a cap of the node reached: exit 1 naming it, not sent again', async () => {
    const port = Number(small.tcp.split(':').at(-1));
    const held = [];
    try {
      for (let i = 0; i < 2; i += 1) {
        held.push(await new Promise((resolve, reject) => {
          const socket = net.connect(port, '127.0.0.1', () => resolve(socket)).once('error', reject);
        }));
      }
      const result = await runCli(['send', small.tcp, 'job:x', '1']);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, 'berrymq-js: error: Limit reached (-32009): 127.0.0.1 has 2 connections open, ' +
        'the cap (setting max_connections_per_client); not sent again: run the command again once the node has room\n');
    } finally {
      for (const socket of held) socket.destroy();
    }
  });
});

describe('berrymq-js interconnect keeps its session', { timeout: 6 * DEADLINE }, () => {
  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: renewed every ttl/3 while quiet; when the node goes, says why and exits 1`, async () => {
      const own = await startNode();
      const client = startCli(['interconnect', own[scheme], '--ttl', '1']);
      try {
        assert.equal(await client.stdout.next(), 'interconnected');
        assert.equal(await own.stdout.next(), 'node:joined ["interconnect"]');
        // quiet for three times its ttl: only the renewals keep the session open
        await new Promise((resolve) => setTimeout(resolve, 3000));
        const result = await runCli(['send', own[scheme], 'news:still', 'here']);
        assert.equal(result.code, 0, result.stderr);
        assert.equal(await client.stdout.next(), 'news:still ["here"]');
        await own.stop();
        assert.equal(await client.exited, 1);
        assert.match(await client.stderr.next(), new RegExp(`^berrymq-js: error: the interconnection ended: .*${own[scheme]}`));
      } finally {
        client.child.kill();
        await own.stop();
      }
    });
  }
});

describe('berrymq-js interconnect prints "interconnected" first', { timeout: 2 * DEADLINE }, () => {
  it('even when the node forwards a message in the same read as its answer to interconnect', async () => {
    // a node that does just that: its answer and a send_messages in one write
    const token = 'T'.repeat(43);
    const server = net.createServer((socket) => {
      let buffer = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => {
        buffer += chunk;
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          const request = JSON.parse(buffer.slice(0, newline));
          buffer = buffer.slice(newline + 1);
          if (request.id === undefined || request.result !== undefined) continue; // a notification, or an answer
          const reply = { jsonrpc: '2.0', result: request.method === 'interconnect' ? token : 'ok', id: request.id };
          let text = `${JSON.stringify(reply)}\n`;
          if (request.method === 'interconnect') {
            text += `${JSON.stringify({ jsonrpc: '2.0', method: 'send_messages', id: 'n1', params: {
              token: request.params.token, messages: [['news:early', [1], {}], ['news:early', [2], {}]] } })}\n`;
          }
          socket.write(text);
        }
      });
      socket.on('error', () => {});
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = startCli(['interconnect', `tcp://127.0.0.1:${server.address().port}`, '--count', '2']);
    try {
      assert.equal(await client.stdout.next(), 'interconnected');
      assert.equal(await client.stdout.next(), 'news:early [1]');
      assert.equal(await client.stdout.next(), 'news:early [2]');
      assert.equal(await client.exited, 0);
    } finally {
      client.child.kill();
      server.close();
    }
  });
});
