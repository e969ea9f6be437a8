import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'

describe('types', () => {
  it('type-check the documented usage, and reject the wrong uses marked @ts-expect-error', () => {
    const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'test/types/tsconfig.json'], { encoding: 'utf8' })
    expect(tsc.stdout + tsc.stderr).toBe('')
    expect(tsc.status).toBe(0)
  }, 60_000)
})
