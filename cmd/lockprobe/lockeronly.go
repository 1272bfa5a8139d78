//go:build lockeronly

package main

// The locker build has no other commands (main.go).
var otherCommands, hidden map[string]command
