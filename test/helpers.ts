// Unit tests drive an inline machine: every CPU on the test's own thread.
export { inlineMachine as testMachine, type InlineMachine as TestMachine } from '../src/engine/inline.ts';
