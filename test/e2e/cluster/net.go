package cluster

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// network is a cluster's bridge, its veth pairs and the nodes' network namespaces.
type network struct {
	id     string
	nodes  int
	subnet string // "10.A.B": the /24 of the cluster
	bridge string
	addr   string // the bridge's address, .1
	made   []string
	netnss []string
}

// up creates the bridge with its address and, per node, a namespace and a veth pair whose node
// side is the node's eth0 with address .10+i.
func (n *network) up(id string, nodes int) error {
	n.id, n.nodes = id, nodes
	subnet, err := freeSubnet()
	if err != nil {
		return err
	}
	n.subnet = subnet
	n.bridge = prefix(id) + "br"
	n.addr = subnet + ".1"
	steps := [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", n.addr + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	}
	if err := ipAll(steps); err != nil {
		return err
	}
	n.made = append(n.made, n.bridge)
	for i := range nodes {
		ns, host, peer := n.netns(i), n.hostLink(i), prefix(id)+fmt.Sprintf("n%d", i)
		if err := ip("netns", "add", ns); err != nil {
			return err
		}
		n.netnss = append(n.netnss, ns)
		if err := ip("link", "add", host, "type", "veth", "peer", "name", peer); err != nil {
			return err
		}
		n.made = append(n.made, host)
		err := ipAll([][]string{
			{"link", "set", peer, "netns", ns},
			{"link", "set", host, "master", n.bridge, "up"},
			{"-n", ns, "link", "set", peer, "name", "eth0"},
			{"-n", ns, "addr", "add", n.nodeAddr(i) + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (n *network) netns(i int) string    { return fmt.Sprintf("%s-n%d", prefix(n.id), i) }
func (n *network) hostLink(i int) string { return fmt.Sprintf("%sh%d", prefix(n.id), i) }
func (n *network) nodeAddr(i int) string { return fmt.Sprintf("%s.%d", n.subnet, 10+i) }

// down deletes the links (a veth's deletion takes its peer) and then the namespaces: deleting a
// namespace first would leave its veth to the kernel's asynchronous cleanup.
func (n *network) down() error {
	var errs []error
	for i := len(n.made) - 1; i >= 0; i-- {
		if linkExists(n.made[i]) {
			errs = append(errs, ip("link", "del", n.made[i]))
		}
	}
	for _, ns := range n.netnss {
		errs = append(errs, ip("netns", "del", ns))
	}
	n.made, n.netnss = nil, nil
	return errors.Join(errs...)
}

// freeSubnet picks a random 10.A.B.0/24 (A in 200-249) that no interface of this host has an
// address in and no route names.
func freeSubnet() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for range 50 {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		subnet := fmt.Sprintf("10.%d.%d", 200+int(b[0])%50, b[1])
		_, cidr, _ := net.ParseCIDR(subnet + ".0/24")
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && (cidr.Contains(ipn.IP) || ipn.Contains(cidr.IP)) && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				used = true
			}
		}
		out, _ := exec.Command("ip", "route", "show", subnet+".0/24").Output()
		if !used && strings.TrimSpace(string(out)) == "" {
			return subnet, nil
		}
	}
	return "", errors.New("no free 10.x.y.0/24 subnet after 50 tries")
}

// ip runs one ip(8) command.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func ipAll(steps [][]string) error {
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// linkExists tells whether this (root) namespace has a link of that name.
func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}
