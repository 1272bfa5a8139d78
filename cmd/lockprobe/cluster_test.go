package main

import (
	"path/filepath"
	"testing"
)

// TestClusterFlagsRefused: the flags of runs across nodes are checked before anything starts —
// one line, exit status 2, no output folder, no process. (Runs on a real Slurm and ssh are the
// cluster harness's: test/e2e/cluster.)
func TestClusterFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	run := func(extra ...string) []string { return append([]string{"run", "-out", out}, extra...) }
	t.Setenv("SLURM_JOB_ID", "")
	assertRefused(t, out, []refusal{
		{"unknown launcher", run("-file", "/x/f", "-launcher", "mpirun"), `unknown launcher "mpirun"`},
		{"unknown spread", run("-file", "/x/f", "-launcher", "slurm", "-spread", "plane"), `unknown spread "plane"`},
		{"a relative path on the nodes", run("-file", "x/f", "-launcher", "slurm", "-nodes", "2"), "an absolute path on the nodes"},
		{"two files with a launcher", run("-file", "/x/f", "-file", "/y/f", "-launcher", "ssh", "-hosts", "a"), "give -file once"},
		{"ssh without hosts", run("-file", "/x/f", "-launcher", "ssh"), "needs -hosts"},
		{"-nodes without a launcher", run("-file", filepath.Join(dir, "f"), "-nodes", "3"), "need -launcher slurm or ssh"},
		{"-hosts with slurm", run("-file", "/x/f", "-launcher", "slurm", "-hosts", "a"), "-hosts is for -launcher ssh"},
		{"a host that is no host", run("-file", "/x/f", "-launcher", "ssh", "-hosts", "a,$(id)"), `"$(id)" is not a host name`},
		{"an option as a host", run("-file", "/x/f", "-launcher", "ssh", "-hosts", "-oProxyCommand=sh"), "is not a host name"},
		{"-remote beside a launcher", run("-file", "/x/f", "-launcher", "slurm", "-nodes", "2", "-remote", "1"), "the launcher starts every locker"},
		{"no allocation and no -nodes", run("-file", "/x/f", "-launcher", "slurm"), "no Slurm allocation"},
		{"a node target that is no number", run("-file", "/x/f", "-launcher", "slurm", "-scenario", writeScenario(t, dir, "all: file@{file}\nnode=x: write\n")), "node=x"},
	})
}
