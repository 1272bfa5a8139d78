package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func (c *Cluster) sshDir() string     { return filepath.Join(c.Dir, "ssh") }
func (c *Cluster) sshdConfig() string { return filepath.Join(c.sshDir(), "sshd_config") }

// writeSSH makes a host key and a user key, the sshd configuration every node's sshd reads
// (each listens on its node's address only), and the client configuration: every node by
// name with its address, the key, the known host keys, batch mode.
func (c *Cluster) writeSSH() error {
	dir := c.sshDir()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for _, k := range []string{"host_key", "id_ed25519"} {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lockprobe-test-"+c.ID, "-f", filepath.Join(dir, k)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
	}
	userPub, err := os.ReadFile(filepath.Join(dir, "id_ed25519.pub"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), userPub, 0o600); err != nil {
		return err
	}
	hostPub, err := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err != nil {
		return err
	}
	hostKey := strings.Join(strings.Fields(string(hostPub))[:2], " ")
	sftp := "/usr/lib/openssh/sftp-server"
	sshd := fmt.Sprintf(`# lockprobe test cluster %s: every node's sshd
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
LogLevel ERROR
Subsystem sftp %s
`, c.ID, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"), sftp)
	if err := os.WriteFile(c.sshdConfig(), []byte(sshd), 0o600); err != nil {
		return err
	}
	var known, client strings.Builder
	for _, n := range c.Nodes {
		fmt.Fprintf(&known, "%s,%s %s\n", n.Name, n.Addr, hostKey)
		fmt.Fprintf(&client, "Host %s\n  HostName %s\n", n.Name, n.Addr)
	}
	fmt.Fprintf(&client, `Host *
  User root
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 5
  LogLevel ERROR
`, filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts"))
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(known.String()), 0o600); err != nil {
		return err
	}
	c.SSHConfig = filepath.Join(dir, "config")
	return os.WriteFile(c.SSHConfig, []byte(client.String()), 0o600)
}
