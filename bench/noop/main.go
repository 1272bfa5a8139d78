// Command noop is a Go program that does nothing: BenchmarkStartup starts as many of them at
// once as a run starts lockers, and the time until the last has exited is what this machine
// needs to start that many Go processes at all (exec, the Go runtime's start, exit), whatever
// the binary.
package main

func main() {}
