// The package is dual: `require('docdb-client')` (a CommonJS project, as `npm init -y`
// makes) and `import` give the same API. The package refers to itself by name, so this
// resolves through package.json "exports" like an installed copy would.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);

test('require() loads the CommonJS build with the whole API', () => {
  const cjs = require('docdb-client');
  assert.equal(typeof cjs.connect, 'function');
  assert.equal(typeof cjs.errorForStatus, 'function');
  assert.equal(cjs.DEFAULT_COLLECTION, '_default');
  const e = cjs.errorForStatus(1, 'collection already exists');
  assert.ok(e instanceof cjs.ConflictError);
  assert.equal(e.status, 1);
  assert.equal(require('docdb-client/package.json').name, 'docdb-client');
});

test('the CommonJS build takes TCP + TLS options too', () => {
  const cjs = require('docdb-client');
  assert.equal(new cjs.Client({ host: '127.0.0.1', port: 7070, tls: true }).address, '127.0.0.1:7070');
  assert.throws(() => new cjs.Client({ host: '127.0.0.1', port: 7070 }), TypeError);
});

test('import loads the ES module build', async () => {
  const esm = await import('docdb-client');
  assert.equal(typeof esm.connect, 'function');
  assert.equal(esm.DEFAULT_COLLECTION, '_default');
});

test('every status and the collection texts map to their error class', async () => {
  const { errorForStatus, ServerError, NotFoundError, ConflictError, MemoryLimitError, DocDBError } =
    await import('docdb-client');
  const cases = [
    [1, 'invalid JSON', ServerError, 1],
    [2, 'document not found', NotFoundError, 2],
    [3, 'document already exists', ConflictError, 3],
    [3, 'transaction conflict', ConflictError, 3],
    [4, 'memory limit exceeded', MemoryLimitError, 4],
    [1, 'collection already exists', ConflictError, 1],
    [1, 'collection not found', NotFoundError, 1],
    [9, 'from a newer server', DocDBError, 9],
  ];
  for (const [status, text, cls, want] of cases) {
    const e = errorForStatus(status, text);
    assert.ok(e instanceof cls, `${status} ${text}: ${e.name}`);
    assert.equal(e.status, want);
    assert.equal(e.serverMessage, text);
  }
  const named = errorForStatus(1, 'collection not found', { detail: '"users"' });
  assert.equal(named.message, 'collection not found: "users"');
  assert.equal(named.serverMessage, 'collection not found');
});
