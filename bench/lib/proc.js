// Child processes of a benchmark: private redis-servers, app servers, load generators.
// Every child is tracked and killed when this process ends, however it ends.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const children = new Set()
const dirs = new Set()

function killAll () {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  children.clear()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  dirs.clear()
}

process.once('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => { killAll(); process.exit(130) })
}

export function track (child) {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

export async function freePort () {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = server.address().port
      server.close(() => resolve(port))
    })
  })
}

async function exited (child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = new Promise(resolve => child.once('exit', resolve))
  await Promise.race([done, sleep(ms)])
}

async function stopChild (child, ms = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  await exited(child, ms)
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL')
    await exited(child, 1000)
  }
}

/** A private redis-server on a free loopback port: no persistence, noeviction. */
export async function startRedis () {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'gcra-bench-redis-'))
  dirs.add(dir)
  const child = track(spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--maxmemory-policy', 'noeviction',
  ], { stdio: 'ignore' }))
  const deadline = Date.now() + 10_000
  for (;;) {
    const ping = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' })
    if (ping.stdout?.trim() === 'PONG') break
    if (Date.now() > deadline || child.exitCode !== null) {
      await stopChild(child)
      throw new Error(`redis-server did not start on port ${port}`)
    }
    await sleep(50)
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    stop: async () => {
      await stopChild(child)
      rmSync(dir, { recursive: true, force: true })
      dirs.delete(dir)
    },
  }
}

/** Wait for the first IPC message of a child, at most `ms`. */
function firstMessage (child, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`${what}: no answer within ${ms} ms`)) }, ms)
    const onMessage = (m) => { cleanup(); resolve(m) }
    const onExit = (code, signal) => { cleanup(); reject(new Error(`${what}: exited (${code ?? signal}) before answering`)) }
    const cleanup = () => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.on('message', onMessage)
    child.once('exit', onExit)
  })
}

/** Send a child `{ type }` over IPC and wait for its answer of that type, at most `ms`. */
function ask (child, type, ms, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`${what}: no ${type} answer within ${ms} ms`)) }, ms)
    const onMessage = (m) => { if (m?.type !== type) return; cleanup(); resolve(m) }
    const onExit = (code, signal) => { cleanup(); reject(new Error(`${what}: exited (${code ?? signal}) before answering ${type}`)) }
    const cleanup = () => { clearTimeout(timer); child.off('message', onMessage); child.off('exit', onExit) }
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.send({ type })
  })
}

/**
 * An app server in a child process of its own (bench/lib/server.js), listening on a free
 * loopback port. `cpu()` reads its own CPU time (`process.cpuUsage()`, µs); `stop()` asks
 * it for what it recorded, then ends it.
 */
export async function startServer (config, { nodeArgs = [] } = {}) {
  const child = track(spawn(process.execPath, [...nodeArgs, join(here, 'server.js'), JSON.stringify(config)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  }))
  let ready
  try {
    ready = await firstMessage(child, 15_000, `server ${config.limiter}`)
  } catch (error) {
    await stopChild(child)
    throw error
  }
  if (ready.error !== undefined) {
    await stopChild(child)
    throw new Error(`server ${config.limiter}: ${ready.error}`)
  }
  return {
    port: ready.port,
    pid: child.pid,
    cpu: async () => (await ask(child, 'cpu', 5000, `server ${config.limiter}`)).usage,
    stop: async () => {
      let report
      if (child.connected) {
        const answer = firstMessage(child, 5000, `server ${config.limiter} report`).catch(() => undefined)
        child.send({ type: 'report' })
        report = await answer
      }
      await stopChild(child)
      return report
    },
  }
}

/**
 * One autocannon run in its own child process (bench/lib/load.js). `spec`: url, duration
 * (s) or amount, connections, keys (identities rotated in an x-api-key header) and a
 * key prefix. Bounded in time whatever happens.
 */
export async function runLoad (spec) {
  const limitMs = ((spec.duration ?? 10) + 30) * 1000
  const child = track(spawn(process.execPath, [join(here, 'load.js'), JSON.stringify(spec)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  }))
  let out = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (chunk) => { out += chunk })
  const timer = setTimeout(() => child.kill('SIGKILL'), limitMs)
  await new Promise(resolve => child.once('exit', resolve))
  clearTimeout(timer)
  if (child.exitCode !== 0) throw new Error(`load generator failed (${child.exitCode ?? child.signalCode}): ${out.slice(0, 500)}`)
  return JSON.parse(out)
}
