/**
 * Vitest global setup: one anonymous registry for the whole run, shared by every test
 * file through `inject('registry')` (its `127.0.0.1:PORT`).
 */
import type { TestProject } from 'vitest/node';
import { startRegistry } from './registry-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    registry: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const registry = await startRegistry();
  project.provide('registry', registry.host);
  return async () => {
    await registry.stop();
  };
}
