//go:build !lockeronly

package main

// otherCommands are the full build's subcommands beyond a locker's own (main.go).
var otherCommands = map[string]command{
	"run":       {runCmd, "start lockers on a file, drive a scenario, analyse and report"},
	"analyze":   {analyzeCmd, "analyse a saved run: DIR or its trace file → verdict and reports"},
	"export":    {exportCmd, "send a saved run's spans to an OTLP collector, or write them as OTLP JSON"},
	"scenarios": {scenariosCmd, "list the built-in scenarios"},
	"simfs":     {simfsCmd, "serve a FUSE lock file system with Lustre's lock semantics and faults, through K mounts"},
	"exec":      {execCmd, "run a program (N copies) and record its every lock call: verdict and reports"},
	"watch":     {watchCmd, "watch running processes that share files, without stopping them: verdict and reports"},
	"who":       {whoCmd, "who holds and who waits for the locks of a file, on this node"},
}

// hidden commands: started by lockprobe itself, not listed.
var hidden = map[string]command{
	"exec-child": {execChildCmd, ""},
}
