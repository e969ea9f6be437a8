/**
 * Starts a private redis-server on a free loopback port for the whole run and stops it
 * after. Without redis-server: a loud warning and the Redis suites report themselves as
 * not run; under CI=true, the run fails instead.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string
  }
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      server.close(() => resolve(port))
    })
  })
}

export async function startRedis (args: string[] = [], chosenPort?: number): Promise<{ port: number, process: ChildProcess, stop: () => Promise<void> }> {
  const port = chosenPort ?? await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'gcra-redis-'))
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...args], { stdio: 'ignore' })
  const deadline = Date.now() + 10_000
  for (;;) {
    const ping = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' })
    if (ping.stdout?.trim() === 'PONG') break
    if (Date.now() > deadline || child.exitCode !== null || child.signalCode !== null) {
      child.kill('SIGKILL')
      throw new Error(`redis-server did not start on port ${port}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    port,
    process: child,
    stop: async () => {
      // a child killed by a signal has exitCode null and signalCode set: it has exited too
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise(resolve => child.once('exit', resolve))
        child.kill('SIGTERM')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export default async function setup (project: TestProject): Promise<() => Promise<void>> {
  const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (found.error !== undefined || found.status !== 0) {
    const banner = [
      '',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '!!  redis-server was not found on PATH: the Redis store tests CANNOT run.     !!',
      '!!  Install it (Debian/Ubuntu: apt-get install redis-server) and run again.   !!',
      '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
      '',
    ].join('\n')
    console.error(banner)
    if (process.env.CI === 'true') throw new Error('redis-server is required under CI=true; the Redis tests must run')
    project.provide('redisUrl', '')
    return async () => {}
  }
  const redis = await startRedis()
  project.provide('redisUrl', `redis://127.0.0.1:${redis.port}`)
  return redis.stop
}
