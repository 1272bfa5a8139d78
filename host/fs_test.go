package host

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParseMountInfoLine(t *testing.T) {
	tests := []struct {
		name, in string
		want     Mount
		err      string
	}{
		{
			name: "proc(5) example",
			in:   "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue",
			want: Mount{ID: 36, ParentID: 35, DevMajor: 98, Root: "/mnt1", MountPoint: "/mnt2",
				MountOptions: []string{"rw", "noatime"}, Optional: []string{"master:1"}, FSType: "ext3",
				Source: "/dev/root", SuperOptions: []string{"rw", "errors=continue"}},
		},
		{
			name: "escaped spaces, fuse subtype, no optional fields",
			in:   `120 27 0:52 / /mnt/gluster\040vol rw,relatime - fuse.glusterfs srv:/my\040vol rw,user_id=0,group_id=0,allow_other`,
			want: Mount{ID: 120, ParentID: 27, DevMinor: 52, Root: "/", MountPoint: "/mnt/gluster vol",
				MountOptions: []string{"rw", "relatime"}, FSType: "fuse.glusterfs", Source: "srv:/my vol",
				SuperOptions: []string{"rw", "user_id=0", "group_id=0", "allow_other"}},
		},
		{
			name: "lustre, two optional fields, backslash",
			in:   `200 27 0:60 / /lus\134tre rw shared:5 master:2 - lustre 10.0.0.1@tcp:/fs rw,flock,lazystatfs`,
			want: Mount{ID: 200, ParentID: 27, DevMinor: 60, Root: "/", MountPoint: `/lus\tre`,
				MountOptions: []string{"rw"}, Optional: []string{"shared:5", "master:2"}, FSType: "lustre",
				Source: "10.0.0.1@tcp:/fs", SuperOptions: []string{"rw", "flock", "lazystatfs"}},
		},
		{name: "no separator", in: "36 35 98:0 /mnt1 /mnt2 rw ext3 /dev/root rw", err: "malformed"},
		{name: "short after separator", in: "36 35 98:0 /mnt1 /mnt2 rw - ext3", err: "malformed"},
		{name: "bad id", in: "x 35 98:0 / / rw - ext3 /dev/root rw", err: "mount id"},
		{name: "bad device", in: "36 35 98 / / rw - ext3 /dev/root rw", err: "device"},
		{name: "extra field", in: "36 35 98:0 / / rw - ext3 /dev/root rw x", err: "extra"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMountInfoLine(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`a\040b`: "a b", `\011\012\134`: "\t\n\\", `\04`: `\04`, `x\`: `x\`, `\777`: `\777`, `\0400`: " 0",
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFindMount(t *testing.T) {
	mounts := []Mount{
		{ID: 1, MountPoint: "/"},
		{ID: 2, MountPoint: "/mnt"},
		{ID: 3, MountPoint: "/mnt/a"},
		{ID: 4, MountPoint: "/mnt/a"}, // mounted over 3
		{ID: 5, MountPoint: "/mnt/ab"},
	}
	for path, want := range map[string]int{
		"/": 1, "/etc/x": 1, "/mnt": 2, "/mnt/b": 2, "/mnt/a": 4, "/mnt/a/f": 4, "/mnt/ab/f": 5, "/mnt/abc": 2,
	} {
		m, ok := findMount(mounts, path)
		if !ok || m.ID != want {
			t.Errorf("findMount(%q) = %d, %v; want %d", path, m.ID, ok, want)
		}
	}
	if _, ok := findMount(mounts[1:], "/etc"); ok {
		t.Error("findMount found a mount for /etc without /")
	}
}

func TestLockOptions(t *testing.T) {
	tests := []struct {
		fsType string
		opts   string
		want   string
	}{
		{"lustre", "rw,flock,lazystatfs", "flock"},
		{"lustre", "rw,localflock", "localflock"},
		{"nfs4", "rw,relatime,vers=4.2,rsize=1048576,hard,proto=tcp,local_lock=none,addr=10.0.0.1", "vers=4.2,local_lock=none"},
		{"nfs", "rw,vers=3,nolock,local_lock=all", "vers=3,nolock,local_lock=all"},
		{"fuse.glusterfs", "rw,user_id=0,allow_other", ""},
		{"cifs", "rw,vers=3.1.1,nobrl", "vers=3.1.1,nobrl"},
		{"ext4", "rw,relatime", ""},
	}
	for _, tc := range tests {
		got := strings.Join(LockOptions(tc.fsType, strings.Split(tc.opts, ",")), ",")
		if got != tc.want {
			t.Errorf("LockOptions(%s, %s) = %q, want %q", tc.fsType, tc.opts, got, tc.want)
		}
	}
}

func TestMagicName(t *testing.T) {
	for magic, want := range map[int64]string{
		0xEF53: "ext2/ext3/ext4", 0x0BD00BD0: "lustre", 0x65735546: "fuse", 0x6969: "nfs",
		int64(int32(-0x00ACB2BE)): "cifs", // 0xFF534D42 sign-extended by a 32-bit kernel
		0x1234:                    "",
	} {
		if got := MagicName(magic); got != want {
			t.Errorf("MagicName(%#x) = %q, want %q", magic, got, want)
		}
	}
}

// TestFileSystem checks a temp dir against statfs and mountinfo.
func TestFileSystem(t *testing.T) {
	dir := t.TempDir()
	info, err := FileSystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", info)
	if info.MagicName == "" || info.Mount.MountPoint == "" || info.FSType == "" || len(info.Options) == 0 {
		t.Errorf("incomplete: %+v", info)
	}
	if !pathHasPrefix(info.Path, info.Mount.MountPoint) {
		t.Errorf("mount point %q is not a prefix of %q", info.Mount.MountPoint, info.Path)
	}
	// The magic name and the mountinfo type must agree where both are known.
	if strings.HasPrefix(info.FSType, "ext") && info.MagicName != "ext2/ext3/ext4" ||
		info.FSType == "tmpfs" && info.MagicName != "tmpfs" {
		t.Errorf("magic %s disagrees with mountinfo type %s", info.MagicName, info.FSType)
	}
	if _, err := FileSystem(dir + "/missing"); err == nil {
		t.Error("FileSystem of a missing path: no error")
	}
}

func TestReadFacts(t *testing.T) {
	f := ReadFacts(t.TempDir())
	t.Logf("%+v", f)
	host, _ := os.Hostname()
	if f.Hostname != host || f.KernelRelease == "" || f.FS.FSType == "" {
		t.Errorf("facts incomplete: %+v", f)
	}
	g := ReadFacts("/no/such/path")
	if len(g.Notes) == 0 || g.KernelRelease == "" {
		t.Errorf("facts of a missing path: %+v, want notes and a kernel", g)
	}
}

func TestParseLustreVersion(t *testing.T) {
	for in, want := range map[string]string{
		"2.15.4\n": "2.15.4", "lustre: 2.10.8\nkernel: patchless_client\nbuild: 2.10.8\n": "2.10.8", "": "",
	} {
		if got := parseLustreVersion(in); got != want {
			t.Errorf("parseLustreVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseMountInfoLine(f *testing.F) {
	f.Add("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue")
	f.Add(`120 27 0:52 / /mnt/g\040v rw - fuse.glusterfs srv:/v rw,allow_other`)
	f.Add("1 2 3:4 / / rw - t s")
	f.Fuzz(func(t *testing.T, line string) {
		m, err := ParseMountInfoLine(line)
		if err != nil {
			return
		}
		if m.FSType == "" || m.MountPoint == "" && !strings.Contains(line, " - ") {
			t.Fatalf("accepted %q as %+v", line, m)
		}
		_ = m.Options()
		_ = LockOptions(m.FSType, m.Options())
	})
}

// TestFileSystemMountWithSpace mounts a tmpfs on a directory whose name has
// a space, so mountinfo escapes it (\040), and checks FileSystem finds it.
func TestFileSystemMountWithSpace(t *testing.T) {
	dir := t.TempDir() + "/a b"
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("lockprobe test", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	info, err := FileSystem(dir + "/")
	if err != nil {
		t.Fatal(err)
	}
	if info.Mount.MountPoint != dir || info.FSType != "tmpfs" || info.MagicName != "tmpfs" ||
		info.Mount.Source != "lockprobe test" || !slices.Contains(info.Options, "size=64k") {
		t.Errorf("got %+v, want tmpfs \"lockprobe test\" on %q with size=64k", info, dir)
	}
}

func TestSimfsLockOption(t *testing.T) {
	for _, tc := range []struct{ typ, src, want string }{
		{"fuse.simfs", "simfs:flock:123", "flock"},
		{"fuse.simfs", "simfs:localflock:9", "localflock"},
		{"fuse.simfs", "simfs:noflock:9", "noflock"},
		{"fuse.simfs", "simfs:global:9", ""},
		{"fuse.simfs", "simfs", ""},
		{"fuse.glusterfs", "simfs:flock:1", ""},
	} {
		if got := simfsLockOption(tc.typ, tc.src); got != tc.want {
			t.Errorf("simfsLockOption(%q, %q) = %q, want %q", tc.typ, tc.src, got, tc.want)
		}
	}
}
