'use strict';
/** The library's interconnect renews its session every ttl/3 seconds (a node closes a
 * session it hears nothing of for ttl seconds, and what it forwards to us does not
 * count): a quiet interconnection stays open, renewals stop when it closes, and a renewal
 * that fails reaches onError (message null) and, when the session or the node is gone,
 * ends the connection. Against real Python nodes, over TCP and HTTP. */

const assert = require('assert/strict');
const { describe, it } = require('node:test');
const berrymq = require('..');
const { DEADLINE, Inbox, startNode } = require('./helpers');

for (const scheme of ['tcp', 'http']) {
  describe(`interconnect renews its session, over ${scheme}`, { timeout: 4 * DEADLINE }, () => {
    it('a link with a ttl of 1 s stays open past 3 s of quiet, and messages still arrive both ways', async () => {
      const node = await startNode();
      let link = null;
      try {
        const inbox = new Inbox('messages to the client');
        const errors = [];
        link = await berrymq.interconnect(node[scheme], (m) => inbox.put(m),
          { ttl: 1, onError: (error, message) => errors.push([error.message, message]) });
        assert.equal(link.renewing, true);
        // quiet for three times its ttl: only the renewals keep the session open
        await new Promise((resolve) => setTimeout(resolve, 3000));
        const sender = await berrymq.connectOneway(node.tcp, { ttl: 60 });
        await sender.sendMessage('news:still', ['here']);
        const got = await inbox.next();
        assert.deepEqual([got.id, got.args], ['news:still', ['here']]);
        assert.equal(await link.sendMessage('node:from', ['the link']), 'ok');
        let printed;
        do printed = await node.stdout.next(); while (printed.startsWith('news:'));
        assert.equal(printed, 'node:from ["the link"]');
        await sender.close();
        assert.deepEqual(errors, []);
        assert.equal(link.closed, false);
        await link.close();
        assert.equal(link.renewing, false, 'close() stops the renewals');
      } finally {
        if (link !== null) await link.close();
        await node.stop();
      }
    });

    it('a renewal that finds the session gone reaches onError (message null) and ends the link', async () => {
      const node = await startNode();
      let link = null;
      try {
        const errors = new Inbox('onError');
        link = await berrymq.interconnect(node[scheme], () => {}, { ttl: 1, onError: (error, message) => errors.put([error, message]) });
        // the session is closed at the node, from another connection (of the same
        // transport: each has its sessions); ours stays open
        const other = await berrymq.connect(node[scheme]);
        assert.equal(await other.call('close_connection', { token: link.token }), 'ok');
        await other.close();
        const [error, message] = await errors.next();
        assert.equal(message, null);
        assert.ok(error instanceof berrymq.ConnectionClosed && error.code === berrymq.codes.UNKNOWN_TOKEN, error.message);
        assert.equal(error.message, `the node no longer knows this connection to ${node[scheme]}: ` +
          'Unknown or expired token (-32001)');
        assert.equal(await link.ended, error);
        assert.equal(link.renewing, false);
      } finally {
        if (link !== null) await link.close();
        await node.stop();
      }
    });
  });
}
