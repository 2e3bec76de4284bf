'use strict';
/** The npm package: what `npm pack` puts in it, and that it installs offline (it has no
 * dependencies) with a working `require('berrymq')` and `berrymq-js` command. Needs npm:
 * skipped where it is absent, except under BERRYMQ_REQUIRE_BROKERS=1 (CI). */

const assert = require('assert/strict');
const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { describe, it } = require('node:test');
const { DEADLINE } = require('./helpers');

const PACKAGE = path.join(__dirname, '..');
const manifest = require('../package.json');
const npmFound = spawnSync('npm', ['--version'], { encoding: 'utf8' }).status === 0;
const skip = !npmFound && process.env.BERRYMQ_REQUIRE_BROKERS !== '1' ?
  'npm is not on PATH; set BERRYMQ_REQUIRE_BROKERS=1 to fail instead' : false;

/** Run npm offline (nothing to fetch: the package has no dependencies). */
function npm(args, cwd) {
  return execFileSync('npm', [...args, '--offline', '--no-audit', '--no-fund', '--loglevel=error'],
    { cwd, encoding: 'utf8', timeout: 2 * DEADLINE, env: { ...process.env, npm_config_update_notifier: 'false' } });
}

describe('package.json', () => {
  it('declares what the package is, with no runtime dependencies', () => {
    assert.equal(manifest.name, 'berrymq');
    assert.equal(manifest.license, 'MIT');
    assert.equal(manifest.main, 'berrymq.js');
    assert.deepEqual(manifest.bin, { 'berrymq-js': 'cli.js' });
    assert.equal(manifest.engines.node, '>=18');
    assert.equal(manifest.scripts.test, 'node --test');
    assert.equal(manifest.dependencies, undefined);
    assert.match(fs.readFileSync(path.join(PACKAGE, 'cli.js'), 'utf8'), /^#!\/usr\/bin\/env node\n/);
  });

  it('the library and the CLI need only Node\'s built-in modules', () => {
    const builtins = new Set(require('module').builtinModules);
    for (const file of ['berrymq.js', 'cli.js', ...fs.readdirSync(path.join(PACKAGE, 'lib')).map((f) => `lib/${f}`)]) {
      const text = fs.readFileSync(path.join(PACKAGE, file), 'utf8');
      const code = text.split('\n').filter((line) => !/^\s*(\*|\/\/|\/\*\*)/.test(line)).join('\n');
      for (const [, name] of code.matchAll(/require\('([^']+)'\)/g)) {
        assert.ok(name.startsWith('.') || builtins.has(name.replace(/^node:/, '')), `${file} requires ${name}`);
      }
    }
  });
});

describe('npm', { skip, timeout: 6 * DEADLINE }, () => {
  it('npm pack holds the library, the CLI, the README and the licence, and nothing else', () => {
    const [packed] = JSON.parse(npm(['pack', '--dry-run', '--json'], PACKAGE));
    assert.deepEqual(packed.files.map((f) => f.path).sort(), [
      'LICENSE', 'README.md', 'berrymq.js', 'cli.js', 'lib/answerer.js', 'lib/channel.js', 'lib/http.js', 'lib/protocol.js',
      'lib/tcp.js', 'lib/uids.js', 'package.json',
    ]);
    assert.equal(packed.name, 'berrymq');
  });

  it('installs offline from the packed tarball and from the directory', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berrymq-npm-'));
    try {
      fs.writeFileSync(path.join(dir, 'package.json'), '{"name": "app", "version": "1.0.0", "private": true}');
      const tarball = npm(['pack', PACKAGE, '--pack-destination', dir], dir).trim().split('\n').at(-1);
      for (const source of [path.join(dir, tarball), PACKAGE]) {
        npm(['install', source], dir);
        const api = execFileSync(process.execPath, ['-e',
          "const b = require('berrymq'); console.log(['connectOneway', 'connectViaQueue', 'interconnect', " +
          "'sendMessage', 'get', 'getNowait', 'ask', 'closeConnection'].every((n) => typeof b[n] === 'function'))"],
        { cwd: dir, encoding: 'utf8' });
        assert.equal(api, 'true\n', source);
        const bin = path.join(dir, 'node_modules', '.bin', 'berrymq-js');
        const usage = spawnSync(bin, [], { encoding: 'utf8' });
        assert.equal(usage.status, 2, `${source}: ${usage.stderr}`);
        assert.match(usage.stderr, /^berrymq-js: error: a VERB is required/);
        npm(['uninstall', 'berrymq'], dir);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
