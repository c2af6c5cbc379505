// The browsable API, used as a person would use it: headless Chromium (Debian's `chromium`)
// registers (after a refused try whose errors show at their fields), logs in, reads and
// renames the profile, sets up two-factor login and logs in with a one-time code, lets the
// pages renew a refused access token on their own, refreshes and logs out through the pages
// only, resets the password through the page a reset link opens, and leaves a screenshot of
// every step, at desktop and phone widths, under `target/browser/`. axe-core checks every
// step, and every page, in the light and the dark theme: a serious or critical finding fails.
// The service is the real binary, on a free port and a fresh SQLite file.
//
// Run: `cargo build && (cd tests/browser && npm ci && npm test)`; `.ci/run` does it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
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
const AXE_SOURCE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
/** axe-core's impacts that fail the test; `moderate` and `minor` ones are advice. */
const FAILING_IMPACTS = ['serious', 'critical'];
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

  await t.test('a refused registration shows each error at its field, until the next try', async () => {
    const form = operation('Create an account');
    const email = form.getByLabel('Email');
    const password = form.getByLabel('Password');
    await email.fill('ann-at-example.org');
    await password.fill(PASSWORD);
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('400 Bad Request');
    await expectFieldError(email, 'Enter a valid email address.');
    assert.equal(await password.getAttribute('aria-invalid'), null, 'the password was not refused');
    assert.equal(await page.evaluate(() => document.activeElement?.name), 'email', 'the refused field has the focus');
    await screenshot('register-refused');

    await email.fill(EMAIL);
    await password.fill('123');
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('400 Bad Request');
    // Every message of the field, under it.
    await expectFieldError(password, (await answerBody()).password.join(' '));
    await expectNoFieldError(email);
  });

  await t.test('registers', async () => {
    const form = operation('Create an account');
    await form.getByLabel('Email').fill(EMAIL);
    await form.getByLabel('Password').fill(PASSWORD);
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('201 Created');
    assert.equal((await answerBody()).email, EMAIL);
    await expectNoFieldError(form.getByLabel('Password'));
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
    await form.getByRole('alert').filter({ hasText: 'No active account found with the given credentials' }).waitFor();
    assert.equal(await storedTokens(), null, 'a refused login keeps no token');
    await screenshot('login-refused');
  });

  await t.test('logs in, and the tab keeps the tokens', async () => {
    const form = operation('Log in');
    await form.getByLabel('Password').fill(PASSWORD);
    await form.getByRole('button', { name: 'Send POST' }).click();
    await expectAnswer('200 OK');
    assert.equal(await form.getByRole('alert').count(), 0, 'the last try\'s message went');
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

  await t.test('a refused access token is renewed once with the refresh token, and the request sent again', async () => {
    await page.evaluate(() => sessionStorage.setItem('restful-auth.access_token', 'not.a.token'));
    await page.reload();
    assert.equal(await page.getByLabel('Access token').inputValue(), 'not.a.token');
    const refreshes = countRequests('POST', '/api/refresh/');
    await operation('Show my profile').getByRole('button', { name: 'Send GET' }).click();
    await expectAnswer('200 OK');
    assert.equal((await answerBody()).username, USERNAME);
    await page.locator('#response-detail .renewed').waitFor();
    const renewed = await storedTokens();
    assert.notEqual(renewed.refresh, loginTokens.refresh, 'the rotated refresh token is kept');
    assert.notEqual(renewed.access, 'not.a.token');
    assert.equal(await page.getByLabel('Access token').inputValue(), renewed.access);
    assert.equal(refreshes.stop(), 1);
    loginTokens = renewed;
    await screenshot('me-renewed');
  });

  await t.test('requests refused at once share one refresh, so the session survives', async () => {
    await page.evaluate(() => sessionStorage.setItem('restful-auth.access_token', 'not.a.token'));
    await page.reload();
    const refreshes = countRequests('POST', '/api/refresh/');
    // The refresh answers late, so that both 401s are in before it: two refreshes would
    // present one refresh token twice, which ends the session.
    await page.route('**/api/refresh/', async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 500));
      await route.continue();
    });
    const answers = ['GET', 'PATCH'].map((method) => page.waitForResponse(
      (response) => response.request().method() === method && response.url() === `${base}/api/me/` && response.status() === 200,
    ));
    await page.evaluate(() => {
      for (const form of document.querySelectorAll('form[data-method=GET], form[data-method=PATCH]')) form.requestSubmit();
    });
    await Promise.all(answers);
    await page.unroute('**/api/refresh/');
    assert.equal(refreshes.stop(), 1, 'one refresh for both');
    const renewed = await storedTokens();
    assert.notEqual(renewed.refresh, loginTokens.refresh);
    loginTokens = renewed;
    // The session lives on: its tokens still work, with no refresh needed.
    const again = countRequests('POST', '/api/refresh/');
    await operation('Show my profile').getByRole('button', { name: 'Send GET' }).click();
    await expectAnswer('200 OK');
    assert.equal(await page.locator('#response-detail .renewed').count(), 0);
    assert.equal(again.stop(), 0);
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

  await t.test('a refresh token of an ended session is not renewed: the 401 shows, and the tab forgets it', async () => {
    await page.evaluate((refresh) => {
      sessionStorage.setItem('restful-auth.access_token', 'not.a.token');
      sessionStorage.setItem('restful-auth.refresh_token', refresh);
    }, loginTokens.refresh);
    await page.reload();
    const form = operation('Show my profile');
    await form.getByRole('button', { name: 'Send GET' }).click();
    await expectAnswer('401 Unauthorized');
    assert.equal((await answerBody()).code, 'token_not_valid');
    await form.getByRole('alert').filter({ hasText: 'Given token not valid for any token type' }).waitFor();
    assert.equal(await storedTokens(), null);
    assert.equal(await page.getByLabel('Access token').inputValue(), '');
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
    const newPassword = page.getByLabel('New password', { exact: true });
    await newPassword.fill('12345');
    await page.getByRole('button', { name: 'Set the new password' }).click();
    await expectFieldError(newPassword, /This password is too short\./);
    await screenshot('reset-refused');
    await newPassword.fill(NEW_PASSWORD);
    await page.getByRole('button', { name: 'Set the new password' }).click();
    await page.locator('#link-result', { hasText: 'Password has been reset.' }).waitFor();
    await expectNoFieldError(newPassword);
    await screenshot('reset');

    // The same link again, in a fresh page (from here, only its fragment would change).
    await page.goto(`${base}/`);
    await page.goto(link);
    await page.getByLabel('New password', { exact: true }).fill('yet another passphrase');
    await page.getByRole('button', { name: 'Set the new password' }).click();
    await page.getByRole('alert').filter({ hasText: 'Invalid or expired link.' }).waitFor();
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

  await t.test('the focus ring stands out at least 3:1 from the colours it touches, in both themes', async () => {
    const found = [];
    let reached = 0;
    for (const url of ['/', '/api/login/']) {
      for (const colorScheme of ['light', 'dark']) {
        await page.emulateMedia({ colorScheme });
        await page.goto(`${base}${url}`);
        for (const ring of await focusRings()) {
          reached += 1;
          const [outline, ...touching] = [ring.outline, ring.behind].map(rgb);
          const ratio = contrastRatio(outline, ...touching);
          if (ring.style === 'none' || ring.width < 2 || ratio < 3) {
            found.push(`${url} ${colorScheme} ${ring.element}: ${ring.style} ${ring.width}px ${ring.outline} on ${ring.behind} (${ratio.toFixed(2)}:1)`);
          }
        }
      }
    }
    await page.emulateMedia({ colorScheme: null });
    assert.deepEqual(found, []);
    assert.ok(reached >= 40, `controls reached with Tab: ${reached}`);
  });

  await t.test('every page passes axe-core, in both themes', async () => {
    await page.goto(`${base}/`);
    const linked = await page.evaluate(() => [...document.querySelectorAll('a[href^="/"]')].map((link) => link.getAttribute('href')));
    const urls = [...new Set([...linked, '/api/docs/', '/reset/', '/verify/', '/no/such/page/'])];
    const found = [];
    const notPages = [];
    for (const url of urls) {
      const response = await page.goto(`${base}${url}`);
      if (!response.headers()['content-type']?.startsWith('text/html')) {
        // A JSON or text answer, which Chromium shows in a viewer of its own.
        notPages.push(url);
        continue;
      }
      if (url === '/api/docs/') await page.locator('#tag-sessions').waitFor();
      found.push(...(await accessibilityViolations()).map((violation) => `${url}: ${violation}`));
    }
    assert.deepEqual(found, []);
    assert.deepEqual(notPages.filter((url) => url.startsWith('/api/')), [], 'every API URL is a page');
    assert.ok(urls.length - notPages.length >= 15, `pages checked: ${urls.length - notPages.length}`);
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

/** `input` is marked invalid, and the error it points to sits right under it and says `message`. */
async function expectFieldError(input, message) {
  await input.and(page.locator('[aria-invalid="true"]')).waitFor();
  const described = (await input.getAttribute('aria-describedby')).split(' ');
  const error = page.locator(`[id="${described[0]}"]`);
  if (message instanceof RegExp) assert.match(await error.innerText(), message);
  else assert.equal(await error.innerText(), message);
  assert.ok(
    await input.evaluate((field, id) => field.nextElementSibling?.id === id, described[0]),
    'the error follows its field',
  );
}

async function expectNoFieldError(input) {
  assert.equal(await input.getAttribute('aria-invalid'), null);
  for (const id of (await input.getAttribute('aria-describedby') ?? '').split(' ').filter(Boolean)) {
    assert.doesNotMatch(id, /-error$/, 'no error is referred to');
  }
  assert.equal(await input.evaluate((field) => field.nextElementSibling?.classList.contains('field-error')), false);
}

/**
 * Every control Tab reaches on a freshly loaded page, once round: its focus ring (outline colour, style and
 * width, as the keyboard shows it) and the colour behind it, which the ring, drawn off the
 * element, touches.
 */
async function focusRings() {
  const rings = [];
  for (let presses = 0; presses < 200; presses += 1) {
    await page.keyboard.press('Tab');
    const ring = await page.evaluate(() => {
      const element = document.activeElement;
      if (!element || element === document.body || element.hasAttribute('data-focus-seen')) return null;
      element.setAttribute('data-focus-seen', '');
      const style = getComputedStyle(element);
      let behind = 'rgb(255, 255, 255)';
      for (let node = element.parentElement; node; node = node.parentElement) {
        const background = getComputedStyle(node).backgroundColor;
        if (!/^rgba\(.*, 0\)$|^transparent$/.test(background)) { behind = background; break; }
      }
      const name = `${element.localName}${element.id ? `#${element.id}` : ''} "${(element.textContent || element.name || '').trim().slice(0, 30)}"`;
      return { element: name, outline: style.outlineColor, style: style.outlineStyle, width: parseFloat(style.outlineWidth), behind };
    });
    if (!ring) break;
    rings.push(ring);
  }
  return rings;
}

/** `rgb(r, g, b)` as [r, g, b]. */
function rgb(color) {
  const channels = color.match(/\d+(\.\d+)?/g)?.slice(0, 3).map(Number);
  assert.equal(channels?.length, 3, `a colour: ${color}`);
  return channels;
}

/** WCAG 2.2's contrast ratio of two sRGB colours. */
function contrastRatio(first, second) {
  const luminance = (channels) => {
    const [r, g, b] = channels.map((channel) => {
      const value = channel / 255;
      return value <= 0.04045 ? value / 12.92 : ((value + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [lighter, darker] = [luminance(first), luminance(second)].sort((a, b) => b - a);
  return (lighter + 0.05) / (darker + 0.05);
}

/** Counts the page's requests of `method` to `path` until `stop()`, which returns the count. */
function countRequests(method, path) {
  let count = 0;
  const listener = (request) => {
    if (request.method() === method && new URL(request.url()).pathname === path) count += 1;
  };
  page.on('request', listener);
  return { stop: () => { page.off('request', listener); return count; } };
}

/**
 * axe-core's serious and critical findings on the page as it is now, in the light and the dark
 * theme. Playwright evaluates its script from outside the page, as an extension would: the
 * page's Content-Security-Policy (rightly) runs no script but the service's own.
 */
async function accessibilityViolations() {
  const found = [];
  for (const colorScheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme });
    if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
    const { violations } = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
    for (const violation of violations.filter(({ impact }) => FAILING_IMPACTS.includes(impact))) {
      const where = violation.nodes.map((node) => node.target.join(' ')).join(', ');
      found.push(`${colorScheme}: ${violation.id} (${violation.impact}) ${violation.help}: ${where}`);
    }
  }
  await page.emulateMedia({ colorScheme: null });
  return found;
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

/** The page as it looks now, on a desktop and on a phone; axe-core finds nothing serious in it. */
async function screenshot(name, { fullPage = true } = {}) {
  assert.deepEqual(await accessibilityViolations(), [], `axe-core on ${name}`);
  step += 1;
  const file = (size) => path.join(SCREENSHOTS, `${String(step).padStart(2, '0')}-${name}-${size}.png`);
  await page.screenshot({ path: file('desktop'), fullPage });
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: file('phone'), fullPage });
  await page.setViewportSize(DESKTOP);
}
