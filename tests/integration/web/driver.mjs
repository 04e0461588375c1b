// Drives headless Chromium for test_web.py: one JSON command per line on stdin, one JSON answer
// per line on stdout ({"ok": true, "value": ...} or {"ok": false, "error": "..."}). The browser
// runs with a fresh, empty profile and no network but loopback.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let context = null;
let page = null;
let profile = null;
const problems = []; // console errors and uncaught page errors, in order

async function open({ url, width = 1400, height = 1000 }) {
  await close(); // one page at a time, each in a fresh profile
  problems.length = 0;
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mongotap-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width, height },
  });
  watch(context.pages()[0] || await context.newPage());
  await page.goto(url, { waitUntil: 'load' });
  return page.url();
}

// Makes p the page every command works on, its problems recorded.
function watch(p) {
  page = p;
  p.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
  p.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
}

// Clicks selector, which opens a new tab, and goes on in that tab.
async function popup({ selector }) {
  const [p] = await Promise.all([context.waitForEvent('page'), page.click(selector)]);
  watch(p);
  await p.waitForLoadState('load');
  return p.url();
}

async function close() {
  if (context) await context.close();
  context = page = null;
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
  profile = null;
}

const commands = {
  open,
  close,
  popup,
  // Evaluates an expression (a function body's return value) in the page.
  eval: ({ expr, arg }) => page.evaluate(new Function('arg', 'return (' + expr + ');'), arg),
  // Waits until the expression is truthy in the page; returns its value.
  wait: async ({ expr, arg, timeout = 15000 }) => {
    const h = await page.waitForFunction(new Function('arg', 'return (' + expr + ');'), arg,
      { timeout, polling: 100 });
    return h.jsonValue();
  },
  click: ({ selector }) => page.click(selector),
  fill: ({ selector, value }) => page.fill(selector, value),
  press: ({ selector, key }) => page.press(selector, key),
  screenshot: ({ path: out, fullPage = true }) => page.screenshot({ path: out, fullPage }).then(() => out),
  problems: () => problems.slice(),
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let answer;
  try {
    const msg = JSON.parse(line);
    const fn = commands[msg.cmd];
    if (!fn) throw new Error('unknown command ' + msg.cmd);
    const value = await fn(msg);
    answer = { ok: true, value: value === undefined ? null : value };
  } catch (e) {
    answer = { ok: false, error: String(e && e.message ? e.message : e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await close();
