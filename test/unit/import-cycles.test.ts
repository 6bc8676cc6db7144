/** The modules of src/ import each other without a cycle (scripts/check-cycles.mjs). */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('the module graph of src/', () => {
  it('has no import cycle', () => {
    const said = execFileSync(process.execPath, ['scripts/check-cycles.mjs', 'src'], { cwd: root, encoding: 'utf8' });
    expect(said).toMatch(/^no import cycles among \d+ modules of src\n$/);
  });
});
