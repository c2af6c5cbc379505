// The browsable API, used as a person would use it: headless Chromium (Debian's `chromium`)
// registers, logs in, reads and renames the profile, sets up two-factor login and logs in with
// a one-time code, refreshes and logs out through the pages only, resets the password through
// the page a reset link opens, and leaves a screenshot of every step, at desktop and phone
// widths, under
// `target/browser/`. The service is the real binary, on a free port and a fresh SQLite file.
//
// Run: `cargo build && (cd tests/browser && npm ci && npm test)`; `.ci/run` does it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR ?? 'target');
const SCREENSHOTS = path.join(TARGET, 'browser');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// What works on our machines: no sandbox (we run as root), no GPU, nothing fetched in the
// background; the profile is a fresh directory (launchPersistentContext's first argument).
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

const EMAIL = `ann.${Date.now()}@example.org`;
const PASSWORD = 'correct horse battery staple';
const USERNAME = 'Ann Lee';
const NEW_PASSWORD = 'a brand new passphrase';

let service;
let serviceLog = '';
let base;
let databaseUrl;
let resetToken = '';
let workDirectory;
let context;
let page;
const problems = [];
const visited = [];
let step = 0;

before(async () => {
  fs.rmSync(SCREENSHOTS, { recursive: true, force: true });
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  workDirectory = fs.mkdtempSync(path.join(os.tmpdir(), 'restful-auth-browser-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  databaseUrl = `sqlite://${path.join(workDirectory, 'restful_auth.sqlite3')}`;
  service = spawn(serviceBinary(), [
    '--database-url', databaseUrl,
    '--bind', `127.0.0.1:${port}`,
    // Pages only: no metrics listener to take the default port of a service running here.
    '--metrics-bind', 'off',
    '--public-url', base,
    // The walk-through takes longer than the default 30 s between a login and its last use.
    '--access-token-lifetime', '10m',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [service.stdout, service.stderr]) stream.on('data', (chunk) => { serviceLog += chunk; });
  await serviceAnswers();

  context = await chromium.launchPersistentContext(path.join(workDirectory, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: DESKTOP,
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(15_000);
  // A console error is a broken page (a script error, or the CSP refusing something), except
  // the browser's own note on each 4xx answer that a step asks for on purpose.
  page.on('console', (message) => {
    if (message.type() === 'error' && !/Failed to load resource: .* status of 4\d\d/.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('request', (request) => visited.push(request.url()));
});

after(async () => {
  await context?.close();
  if (service && service.exitCode === null) {
    service.kill('SIGTERM');
    await new Promise((resolve) => service.once('exit', resolve));
  }
  if (workDirectory) fs.rmSync(workDirectory, { recursive: true, force: true });
});

test('a newcomer makes every call of the API from the pages alone', async (t) => {
  let loginTokens;

  await t.test('the index lists the endpoints in order', async () => {
    const response = await page.goto(`${base}/`);
    assert.equal(response.status(), 200);
    assert.match(response.headers()['content-security-policy'], /default-src 'none'/);
    await assertHeading('restful-auth');
    await screenshot('index');
    await page.getByRole('link', { name: /\/api\/register\// }).first().click();
    await page.waitForURL(`${base}/api/register/`);
  });

  await t.test('registers', async () => {
    const form = operation('Create an account');
    await form.getByLabel('Email').fill(EMAIL);
    await form.getByLabel('Password').fill(PASSWORD);
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('201 Created');
    assert.equal((await answerBody()).email, EMAIL);
    await screenshot('register');
  });

  await t.test('a wrong password is refused, and the error shows', async () => {
    await page.getByRole('link', { name: '/api/login/' }).click(); // "Next: /api/login/"
    await page.waitForURL(`${base}/api/login/`);
    const form = operation('Log in');
    assert.equal(await form.getByLabel('Email').inputValue(), EMAIL, 'the email of the registration is filled in');
    await form.getByLabel('Password').fill('not the password');
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('401 Unauthorized');
    assert.deepEqual(await answerBody(), { detail: 'No active account found with the given credentials' });
    assert.equal(await storedTokens(), null, 'a refused login keeps no token');
    await screenshot('login-refused');
  });

  await t.test('logs in, and the tab keeps the tokens', async () => {
    const form = operation('Log in');
    await form.getByLabel('Password').fill(PASSWORD);
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('200 OK');
    const body = await answerBody();
    assert.equal(body.token_type, 'Bearer');
    loginTokens = await storedTokens();
    assert.deepEqual(loginTokens, { access: body.access_token, refresh: body.refresh_token });
    await page.getByText('Tokens kept in this tab').waitFor();
    await screenshot('login');
  });

  await t.test('reads the profile in one click: the bearer token is filled in', async () => {
    await page.getByRole('link', { name: '/api/me/' }).click(); // "Next: /api/me/"
    await page.waitForURL(`${base}/api/me/`);
    assert.equal(await page.getByLabel('Access token').inputValue(), loginTokens.access);
    await operation('Show my profile').getByRole('button', { name: 'Send GET' }).click();
    await expectAnswer('200 OK');
    assert.deepEqual(await answerBody(), { id: 1, username: EMAIL, email: EMAIL });
    await screenshot('me');
  });

  await t.test('changes the username', async () => {
    const form = operation('Replace my username');
    await form.getByLabel('Username').fill(USERNAME);
    await form.getByRole('button', { name: 'Send PUT' }).click();
    await expectAnswer('200 OK');
    assert.equal((await answerBody()).username, USERNAME);
    await screenshot('me-renamed');
  });

  let totpSecret;

  await t.test('sets up an authenticator: the QR code shows, and a code confirms it', async () => {
    await page.getByRole('navigation', { name: 'Endpoints' }).getByRole('link', { name: 'me/mfa/totp', exact: true }).click();
    await page.waitForURL(`${base}/api/me/mfa/totp/`);
    await operation('Set up an authenticator app').getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('201 Created');
    totpSecret = (await answerBody()).secret;
    await page.locator('.qr-code svg path').waitFor();
    await screenshot('mfa-enrol');
    const confirm = operation('Turn two-factor login on');
    await confirm.getByLabel('Code').fill(totp(totpSecret, Date.now() / 1000));
    await confirm.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('200 OK');
    assert.equal((await answerBody()).recovery_codes.length, 10);
    await screenshot('mfa-confirmed');
  });

  await t.test('a login then asks for the one-time code, and takes it', async () => {
    await page.getByRole('navigation', { name: 'Endpoints' }).getByRole('link', { name: 'login', exact: true }).click();
    await page.waitForURL(`${base}/api/login/`);
    const form = operation('Log in');
    assert.equal(await form.getByLabel('One-time code').isVisible(), false, 'hidden until asked for');
    await form.getByLabel('Password').fill(PASSWORD);
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('401 Unauthorized');
    assert.deepEqual(await answerBody(), { detail: 'A one-time code is required.', code: 'mfa_required' });
    await form.getByLabel('One-time code').waitFor({ state: 'visible' });
    await screenshot('login-mfa-required');
    // The confirmation used this 30-second step's code: the next step's is one step of drift.
    await form.getByLabel('One-time code').fill(totp(totpSecret, Date.now() / 1000 + 30));
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('200 OK');
    const body = await answerBody();
    const claims = JSON.parse(Buffer.from(body.access_token.split('.')[1], 'base64url'));
    assert.deepEqual(claims.amr, ['pwd', 'otp']);
    loginTokens = await storedTokens();
    assert.equal(loginTokens.access, body.access_token);
    await screenshot('login-mfa');
    await page.getByRole('navigation', { name: 'Endpoints' }).getByRole('link', { name: 'me', exact: true }).click();
    await page.waitForURL(`${base}/api/me/`);
  });

  await t.test('"Refresh now" renews the access token in place', async () => {
    await page.getByRole('button', { name: 'Refresh now' }).click();
    await page.waitForFunction((old) => document.getElementById('bearer').value !== old, loginTokens.access);
    const renewed = await storedTokens();
    assert.notEqual(renewed.refresh, loginTokens.refresh, 'the refresh token rotated');
    assert.equal(await page.getByLabel('Access token').inputValue(), renewed.access);
    await operation('Show my profile').getByRole('button', { name: 'Send GET' }).click();
    await expectAnswer('200 OK');
    assert.equal((await answerBody()).username, USERNAME);
    loginTokens = renewed;
  });

  await t.test('refreshes with the kept refresh token, and keeps the new ones', async () => {
    await page.getByRole('navigation', { name: 'Endpoints' }).getByRole('link', { name: 'refresh', exact: true }).click();
    await page.waitForURL(`${base}/api/refresh/`);
    const form = operation('Refresh the tokens');
    assert.equal(await form.getByLabel('Refresh token').inputValue(), loginTokens.refresh);
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('200 OK');
    const body = await answerBody();
    const renewed = await storedTokens();
    assert.deepEqual(renewed, { access: body.access_token, refresh: body.refresh_token });
    assert.notEqual(renewed.refresh, loginTokens.refresh, 'the refresh token rotated');
    assert.equal(await form.getByLabel('Refresh token').inputValue(), renewed.refresh);
    loginTokens = renewed;
    await screenshot('refresh');
  });

  await t.test('logs out, and the tab forgets the tokens', async () => {
    await page.getByRole('link', { name: '/api/logout/' }).click(); // "Next: /api/logout/"
    await page.waitForURL(`${base}/api/logout/`);
    const form = operation('Log out');
    assert.equal(await form.getByLabel('Refresh token').inputValue(), loginTokens.refresh);
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('200 OK');
    assert.deepEqual(await answerBody(), { success: 'User logged out.' });
    assert.equal(await storedTokens(), null);
    assert.equal(await form.getByLabel('Refresh token').inputValue(), '');
    await screenshot('logout');
  });

  await t.test('after the logout, the profile asks for credentials', async () => {
    await page.getByRole('navigation', { name: 'Endpoints' }).getByRole('link', { name: 'me', exact: true }).click();
    await page.waitForURL(`${base}/api/me/`);
    assert.equal(await page.getByLabel('Access token').inputValue(), '');
    await operation('Show my profile').getByRole('button', { name: 'Send GET' }).click();
    await expectAnswer('401 Unauthorized');
    assert.deepEqual(await answerBody(), { detail: 'Authentication credentials were not provided.' });
    await screenshot('me-logged-out');
  });

  await t.test('resets the forgotten password on the page a reset link opens, once', async () => {
    // No SMTP server here: the operator's command prints the link a mail would carry.
    const link = execFileSync(serviceBinary(), [
      '--database-url', databaseUrl, '--public-url', base, 'user', 'reset-link', EMAIL,
    ], { encoding: 'utf8' }).trim();
    assert.ok(link.startsWith(`${base}/reset/#token=`), link);
    resetToken = link.split('#token=')[1];
    await page.goto(link);
    await assertHeading('Choose a new password');
    assert.equal(new URL(page.url()).hash, '', 'the token left the address bar');
    await page.getByLabel('New password', { exact: true }).fill('12345');
    await page.getByRole('button', { name: 'Set the new password' }).click();
    await page.locator('#link-result', { hasText: 'This password is too short.' }).waitFor();
    await page.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Set the new password' }).click();
    await page.locator('#link-result', { hasText: 'Password has been reset.' }).waitFor();
    await screenshot('reset');

    // The same link again, in a fresh page (from here, only its fragment would change).
    await page.goto(`${base}/`);
    await page.goto(link);
    await page.getByLabel('New password', { exact: true }).fill('yet another passphrase');
    await page.getByRole('button', { name: 'Set the new password' }).click();
    await page.locator('#link-result', { hasText: 'Invalid or expired link.' }).waitFor();
    const login = async (password) => {
      const answer = await fetch(`${base}/api/login/`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ email: EMAIL, password }),
      });
      return [answer.status, (await answer.json()).code];
    };
    assert.deepEqual(await login(PASSWORD), [401, undefined]);
    // The new password is right; the reset leaves two-factor login on.
    assert.deepEqual(await login(NEW_PASSWORD), [401, 'mfa_required']);
  });

  await t.test('the reference renders the OpenAPI document', async () => {
    await page.getByRole('navigation', { name: 'Endpoints' }).getByRole('link', { name: 'docs', exact: true }).click();
    await page.waitForURL(`${base}/api/docs/`);
    await page.locator('#tag-sessions').waitFor();
    for (const path of ['/api/register/', '/api/login/', '/api/me/', '/api/refresh/', '/api/logout/']) {
      assert.ok(await page.locator('.operation-doc h3', { hasText: path }).count() > 0, `the reference shows ${path}`);
    }
    await screenshot('docs', { fullPage: false });
  });

  await t.test('no page broke, and no secret went into a URL or a log line', async () => {
    assert.deepEqual(problems, []);
    const secrets = [
      PASSWORD, NEW_PASSWORD, loginTokens.access, loginTokens.refresh, resetToken, totpSecret,
    ];
    assert.ok(resetToken, 'the reset step ran');
    for (const url of visited) {
      // The fragment never leaves the browser: what a request sends is the rest.
      const sent = decodeURIComponent(url.split('#')[0]);
      for (const secret of secrets) assert.ok(!sent.includes(secret), `a URL holds a secret: ${url}`);
    }
    for (const secret of secrets) assert.ok(!serviceLog.includes(secret), 'the service logged a secret');
  });
});

// ---- helpers --------------------------------------------------------------------------------

/** The code an authenticator app shows for `secret` (base32) at Unix time `seconds` (RFC 6238). */
function totp(secret, seconds) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bits = [...secret].map((character) => alphabet.indexOf(character).toString(2).padStart(5, '0')).join('');
  const key = Buffer.from(bits.match(/.{8}/g).map((byte) => parseInt(byte, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(seconds / 30)));
  const mac = crypto.createHmac('sha1', key).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

function serviceBinary() {
  const candidates = [process.env.RESTFUL_AUTH_BIN, ...['release', 'debug'].map((profile) => path.join(TARGET, profile, 'restful-auth'))]
    .filter((candidate) => candidate && fs.existsSync(candidate));
  assert.ok(candidates.length, `no restful-auth binary under ${TARGET}: run \`cargo build\` first (or set RESTFUL_AUTH_BIN)`);
  // The newest build, so that a stale release binary never hides the change under test.
  return candidates.sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
}

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function serviceAnswers() {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    assert.equal(service.exitCode, null, `the service stopped:\n${serviceLog}`);
    try {
      if ((await fetch(`${base}/healthz`)).ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`the service did not answer within 30 s:\n${serviceLog}`);
}

async function assertHeading(name) {
  await page.getByRole('heading', { level: 1, name }).waitFor();
}

/** The form of the operation whose heading reads `summary`. */
function operation(summary) {
  return page.getByRole('form', { name: summary });
}

async function expectAnswer(status) {
  await page.locator('#response-summary', { hasText: status }).waitFor();
}

async function answerBody() {
  return JSON.parse(await page.locator('#response-detail pre.json').innerText());
}

async function storedTokens() {
  return page.evaluate(() => {
    const access = sessionStorage.getItem('restful-auth.access_token');
    const refresh = sessionStorage.getItem('restful-auth.refresh_token');
    return access || refresh ? { access, refresh } : null;
  });
}

/** The page as it looks now, on a desktop and on a phone. */
async function screenshot(name, { fullPage = true } = {}) {
  step += 1;
  const file = (size) => path.join(SCREENSHOTS, `${String(step).padStart(2, '0')}-${name}-${size}.png`);
  await page.screenshot({ path: file('desktop'), fullPage });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: file('phone'), fullPage });
  await page.setViewportSize(DESKTOP);
}
