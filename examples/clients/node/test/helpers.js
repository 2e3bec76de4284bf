'use strict';
/**
 * What the tests share: a real Python berryMQ node (`berrymq serve` in the interpreter
 * named by BERRYMQ_PYTHON, default python3), lines read from a child process with a
 * deadline, and the CLI run as a child process. Nothing here is mocked.
 */

const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const readline = require('readline');
const berrymq = require('..');

const PYTHON = process.env.BERRYMQ_PYTHON || 'python3';
const CLI = path.join(__dirname, '..', 'cli.js');
/** Milliseconds any single expected event may take on a loaded machine. */
const DEADLINE = 20000;

/**
 * The Python node: `berrymq serve` with five receivers of its own, so that asks have
 * something to answer: `price:quote` (9.5 * args[0]), `fail:now` (raises ValueError),
 * `slow:reply` (sleeps args[0] seconds, then returns "slept"), `big:int` (returns
 * 2**53 + 1) and `relay:ask` (asks its peers `args[0]` with `args[1:]` and twitters the replies as
 * `relay:answer`, so a test can make the Python node ask an interconnected client).
 */
const PRELUDE = `
import sys, threading, time
import berrymq
from berrymq.cli import main

@berrymq.following_function("price:quote")
def quote(message):
    return 9.5 * message.args[0]

@berrymq.following_function("fail:now")
def fail(message):
    raise ValueError("refused on purpose")

@berrymq.following_function("slow:reply")
def slow(message):
    time.sleep(message.args[0])
    return "slept"

@berrymq.following_function("big:int")
def big(message):
    return 2**53 + 1

@berrymq.following_function("relay:ask")
def relay(message):
    def run():
        replies = berrymq.ask(message.args[0], *message.args[1:], timeout=10)
        berrymq.twitter("relay:answer", [r if not isinstance(r, berrymq.ReplyError)
                                         else "error: " + str(r) for r in replies])
    threading.Thread(target=run, daemon=True).start()

sys.exit(main(sys.argv[1:]))
`;

/** Values pushed by callbacks, awaited one at a time with a deadline; `end()` makes
 * every later wait fail at once (the source is gone). */
class Inbox {
  constructor(what = 'inbox') {
    this.what = what;
    this.values = [];
    this.waiters = [];
    this.ended = false;
  }

  put(value) {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(value); else this.values.push(value);
  }

  end() {
    this.ended = true;
    for (const waiter of this.waiters.splice(0)) waiter.reject(new Error(`${this.what}: ended before the value expected`));
  }

  /** The next value; rejects when none comes within `ms`, or the source ended. */
  next(ms = DEADLINE) {
    if (this.values.length) return Promise.resolve(this.values.shift());
    if (this.ended) return Promise.reject(new Error(`${this.what}: ended before the value expected`));
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve: (value) => { clearTimeout(timer); resolve(value); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`${this.what}: nothing within ${ms} ms`));
      }, ms);
      this.waiters.push(waiter);
    });
  }
}

/** The lines of a stream, as an Inbox. */
function lines(stream, what) {
  const inbox = new Inbox(what);
  readline.createInterface({ input: stream, crlfDelay: Infinity })
    .on('line', (line) => inbox.put(line))
    .on('close', () => inbox.end());
  return inbox;
}

/** A child process with its stdout and stderr as Lines, and a promise of its exit code. */
function start(argv, { env = {}, what = argv.join(' ') } = {}) {
  const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((resolve, reject) => {
    child.once('error', (error) => reject(new Error(`${what}: cannot start: ${error.message}`)));
    child.once('exit', (code, signal) => resolve(code === null ? signal : code));
  });
  exited.catch(() => {});
  return { child, stdout: lines(child.stdout, what), stderr: lines(child.stderr, `${what} (stderr)`), exited };
}

/** Start a Python node serving TCP and HTTP on free ports and printing the `node:*`
 * and `news:*` messages it sees. Resolves with { tcp, http, stdout, stop }. */
async function startNode({ env = {}, settings = null } = {}) {
  // settings: { name: value } for both JSON-RPC tables of a settings file of the node's own
  const dir = settings && fs.mkdtempSync(path.join(os.tmpdir(), 'berrymq-js-node-'));
  if (dir) {
    const config = path.join(dir, 'berrymq.toml');
    const table = Object.entries(settings).map(([name, value]) => `${name} = ${JSON.stringify(value)}\n`).join('');
    fs.writeFileSync(config, ['jsonrpc-tcp', 'jsonrpc-http'].map((plugin) => `[berrymq.${plugin}]\n${table}`).join('\n'));
    env = { ...env, BERRYMQ_CONFIG: config };
  }
  const node = start([PYTHON, '-c', PRELUDE, 'serve', '--tcp', '127.0.0.1:0', '--http', '127.0.0.1:0',
    '--print', 'node:*', '--print', 'news:*'], { env, what: `python node (${PYTHON})` });
  const stop = async () => {
    if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGTERM');
    await node.exited;
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const [tcp, http] = [await node.stdout.next(), await node.stdout.next()].map((l) => l.replace(/^serving /, ''));
    return { tcp, http, stdout: node.stdout, child: node.child, stop };
  } catch (error) {
    await stop();
    const stderr = node.stderr.values.join('\n');
    throw new Error(`${error.message}; is berryMQ installed for ${PYTHON}? (set BERRYMQ_PYTHON)\n${stderr}`);
  }
}

/** Run the CLI to its end; resolves with { code, stdout, stderr } (text). */
function runCli(args, { env = {}, ms = DEADLINE } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`cli ${args.join(' ')}: still running after ${ms} ms`)); }, ms);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/** Start the CLI and read its lines (for listen and interconnect). */
function startCli(args, options = {}) {
  return start([process.execPath, CLI, ...args], { what: `cli ${args.join(' ')}`, ...options });
}

/** A port nobody listens on (bound and released at once). */
function freePort() {
  return new Promise((resolve) => {
    const server = require('net').createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** POST the JSON text `body` to `url` on a connection of its own: [status, the answer's
 * JSON (null for an empty body)]. */
function postJson(url, body) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, method: 'POST', path: '/', agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; }).on('end', () => resolve([res.statusCode, text ? JSON.parse(text) : null]));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Run `test({ node, link, inbox, callback })` with a real Python node and a client
 * interconnected with it over HTTP (`callback`: the URL of the client's own server, which
 * the node calls; `inbox`: the messages the client got); both are closed after it. */
async function withHttpLink(test) {
  const node = await startNode();
  let link = null;
  try {
    const inbox = new Inbox('messages to the client');
    link = await berrymq.interconnect(node.http, (m) => inbox.put(m), { ttl: 60 });
    const callback = `http://127.0.0.1:${link.channel.server.address().port}`;
    await test({ node, link, inbox, callback });
  } finally {
    if (link !== null) await link.close();
    await node.stop();
  }
}

/** A token as a node issues one (43 URL-safe characters). */
const FAKE_TOKEN = 'A'.repeat(43);

/** Whether a request opens a session: a fake node answers it with its token. */
function opens(request) {
  return typeof request.method === 'string' && (request.method.startsWith('connect_') || request.method === 'interconnect');
}

/**
 * A misbehaving node over TCP on 127.0.0.1 (a free port), for what a real node never does:
 * it answers connect_* and interconnect with `token` (any JSON value) and close_connection
 * with "ok", and hands every other request to `onRequest(request, socket)`, each request
 * line in turn. Resolves with { url, sockets, stop }; stop() destroys the connections.
 */
function fakeTcpNode(onRequest, { token = FAKE_TOKEN } = {}) {
  const net = require('net');
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let rest = '';
    socket.on('data', (chunk) => {
      const parts = (rest + chunk.toString('utf8')).split('\n');
      rest = parts.pop();
      for (const line of parts) {
        if (!line.trim() || socket.destroyed) continue;
        const request = JSON.parse(line);
        if (opens(request) || request.method === 'close_connection') {
          socket.write(`${JSON.stringify({ jsonrpc: '2.0', result: opens(request) ? token : 'ok', id: request.id })}\n`);
        } else {
          onRequest(request, socket);
        }
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const stop = () => new Promise((done) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => done());
      });
      resolve({ url: `tcp://127.0.0.1:${server.address().port}`, sockets, stop });
    });
  });
}

/** The same over HTTP: `onRequest(request, res)` answers the other requests. */
function fakeHttpNode(onRequest, { token = FAKE_TOKEN } = {}) {
  const server = http.createServer((req, res) => {
    let text = '';
    req.on('data', (d) => { text += d; });
    req.on('end', () => {
      const request = JSON.parse(text);
      if (opens(request) || request.method === 'close_connection') {
        const out = Buffer.from(JSON.stringify({ jsonrpc: '2.0', result: opens(request) ? token : 'ok', id: request.id }));
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': out.length }).end(out);
      } else {
        onRequest(request, res);
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const stop = () => new Promise((done) => {
        server.close(() => done());
        server.closeAllConnections();
      });
      resolve({ url: `http://127.0.0.1:${server.address().port}`, stop });
    });
  });
}

/** Resolves once `condition()` is true, looking every few milliseconds; rejects when it
 * is not within `ms`. */
async function until(condition, what, ms = DEADLINE) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

module.exports = {
  PYTHON, CLI, DEADLINE, start, startNode, runCli, startCli, Inbox, freePort, postJson, withHttpLink, FAKE_TOKEN,
  fakeTcpNode, fakeHttpNode, until,
};
