'use strict';
/** What a node answers and is not an answer: a TCP line that is not JSON or not UTF-8 fails
 * the calls waiting at once (not at their timeout), naming it, and closes the connection;
 * a tcp:// URL pointed at an HTTP port says so; a connect_* answer that is not a token is
 * refused, naming the node. */

const assert = require('assert/strict');
const { after, before, describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, fakeHttpNode, fakeTcpNode, startNode } = require('./helpers');

describe('answers that are not answers', { timeout: 4 * DEADLINE }, () => {
  const fakes = [];
  let node = null;

  before(async () => {
    node = await startNode();
  });

  after(async () => {
    await berrymq.closeConnection().catch(() => {});
    await Promise.all(fakes.map((fake) => fake.stop()));
    if (node !== null) await node.stop();
  });

  const cases = [
    ['not JSON', (request) => Buffer.from('hello, this is not json\n'), /answered a line that is not JSON \("hello, this is not json"\): not a JSON-RPC answer; connection closed$/],
    ['not UTF-8', (request) => Buffer.concat([Buffer.from('{"jsonrpc":"2.0","result":"'), Buffer.from([0xff, 0xfe]),
      Buffer.from(`","id":${request.id}}\n`)]), /answered a line that is not UTF-8 \("\{\\"jsonrpc\\":\\"2\.0\\",\\"result\\":\\"\?\?\\",\\"id\\":\d+\}"\): not a JSON-RPC answer; connection closed$/],
  ];
  for (const [what, line, said] of cases) {
    it(`over TCP, an answer line that is ${what} fails the calls waiting at once with a TransportError, and closes the connection`, async () => {
      const fake = await fakeTcpNode((request, socket) => {
        if (request.params && request.params.identifier === 'job:answered') socket.write(line(request));
        // job:waiting is not answered: it waits on when the unreadable line comes
      });
      fakes.push(fake);
      const connection = await berrymq.connectOneway(fake.url, { timeout: DEADLINE });
      const start = Date.now();
      const waiting = connection.sendMessage('job:waiting');
      const answered = connection.sendMessage('job:answered');
      for (const call of [waiting, answered]) {
        await assert.rejects(call, (error) => {
          assert.ok(error instanceof berrymq.TransportError, String(error));
          assert.ok(error instanceof berrymq.ConnectionClosed, String(error));
          assert.equal(error.code, null);
          assert.ok(error.message.startsWith(fake.url), error.message);
          assert.match(error.message, said);
          return true;
        });
      }
      assert.ok(Date.now() - start < DEADLINE / 2, `failed after ${Date.now() - start} ms: at the timeout, not at once`);
      assert.equal(connection.closed, true);
      assert.match((await connection.ended).message, said);
      await assert.rejects(connection.sendMessage('job:later'), berrymq.ConnectionClosed);
      await connection.close(); // resolves: the connection is gone
    });
  }

  it('over HTTP, an answer that is not UTF-8 or not JSON fails its call with a TransportError naming it', async () => {
    const fake = await fakeHttpNode((request, res) => {
      const body = request.params.identifier === 'job:json' ? Buffer.from('hello, this is not json') :
        Buffer.concat([Buffer.from('{"jsonrpc":"2.0","result":"'), Buffer.from([0xff, 0xfe]), Buffer.from(`","id":${request.id}}`)]);
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length }).end(body);
    });
    fakes.push(fake);
    const connection = await berrymq.connectOneway(fake.url, { timeout: DEADLINE });
    for (const [identifier, what] of [['job:json', 'JSON'], ['job:utf8', 'UTF-8']]) {
      await assert.rejects(connection.sendMessage(identifier), (error) => {
        assert.ok(error instanceof berrymq.TransportError, String(error));
        assert.equal(error.message, `${fake.url} answered text that is not ${what}`);
        return true;
      });
    }
    await connection.close();
  });

  it("a tcp:// URL at a node's HTTP port: the error says that an HTTP server answered", async () => {
    const url = node.http.replace(/^http:/, 'tcp:');
    await assert.rejects(berrymq.connectOneway(url, { timeout: DEADLINE }), (error) => {
      assert.ok(error instanceof berrymq.ConnectionClosed, String(error));
      assert.match(error.message, new RegExp(`^${url.replace(/[.]/g, '\\.')} does not speak berryMQ's TCP protocol ` +
        '\\(JSON-RPC, one JSON text per line\\): an HTTP server answered \\("HTTP/1\\.1 400 '));
      assert.match(error.message, /for an HTTP port, use http:\/\/$/);
      return true;
    });
  });

  const notTokens = [
    [{ not: 'a token' }, 'not a string but an object'],
    [null, 'null'],
    [42, 'not a string but a number'],
    ['', 'empty'],
    ['a token', 'not printable ASCII without spaces'],
    ['tök-ën-0123456789abcdef', 'not printable ASCII without spaces'],
    ['line\nbreak-0123456789', 'not printable ASCII without spaces'],
    ['x'.repeat(257), '257 characters long, over 256'],
  ];
  for (const scheme of ['tcp', 'http']) {
    it(`over ${scheme}: a connect_* answer that is not a token is refused, naming the node`, async () => {
      for (const [token, problem] of notTokens) {
        const fake = scheme === 'tcp' ? await fakeTcpNode(() => {}, { token }) : await fakeHttpNode(() => {}, { token });
        fakes.push(fake);
        for (const connect of [(url) => berrymq.connectOneway(url), (url) => berrymq.connectViaQueue(url, 'job:*'),
          (url) => berrymq.interconnect(url, () => {})]) {
          await assert.rejects(connect(fake.url), (error) => {
            assert.ok(error instanceof berrymq.TransportError, String(error));
            assert.ok(error.message.startsWith(`${fake.url} answered `), error.message);
            assert.ok(error.message.endsWith(`, not a token (${problem})`), error.message);
            assert.ok(error.message.length < 300, error.message);
            return true;
          });
        }
        assert.equal(berrymq.connections.length, 0);
      }
      // the tokens a node issues, and those a JSON-RPC 1.0 peer may propose, are taken
      for (const token of ['A'.repeat(43), 'Ab-_0123456789!~#', 'x'.repeat(256)]) {
        const fake = scheme === 'tcp' ? await fakeTcpNode(() => {}, { token }) : await fakeHttpNode(() => {}, { token });
        fakes.push(fake);
        const connection = await berrymq.connectOneway(fake.url);
        assert.equal(connection.token, token);
        await connection.close();
      }
    });
  }
});
