'use strict';
/**
 * Cycle detection for the whole process, as a node does it (docs/protocol.md, "uid"):
 * the uids this process gives the messages and asks it sends over its interconnections,
 * and the uids it has seen on what nodes forwarded to it. One set for the process, not
 * one per connection: a message can reach the process by two of its interconnections
 * (two nodes that forward to each other), and one the process sent can come back to it
 * by another. Bounded: two generations of at most SEEN_LIMIT uids each, the older dropped
 * whole when the newer is full.
 */

const crypto = require('crypto');

/** uids remembered per generation (two generations are kept), as a node does. */
const SEEN_LIMIT = 50000;

/** This process's prefix: 8 URL-safe characters (48 random bits), drawn once. */
const PREFIX = crypto.randomBytes(6).toString('base64url');

/** A new uid: the prefix and 12 URL-safe characters (72 random bits), 20 in all, the
 * form a node gives its own messages; nobody can guess the next one. */
function newUid() {
  return PREFIX + crypto.randomBytes(9).toString('base64url');
}

let now = new Set();
let before = new Set();

/** Whether `uid` is new to this process (it is remembered from now on). A message
 * without a uid is always new; one with this process's prefix is its own, come back. */
function firstTime(uid) {
  if (uid === undefined || uid === null) return true;
  if (typeof uid === 'string' && uid.length === 20 && uid.startsWith(PREFIX)) return false;
  if (now.has(uid) || before.has(uid)) return false;
  now.add(uid);
  if (now.size >= SEEN_LIMIT) {
    before = now;
    now = new Set();
  }
  return true;
}

/** How many uids are remembered (at most 2 * SEEN_LIMIT). */
function remembered() {
  return now.size + before.size;
}

module.exports = { SEEN_LIMIT, PREFIX, newUid, firstTime, remembered };
