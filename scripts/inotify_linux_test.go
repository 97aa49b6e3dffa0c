package scripts

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchWrites reports, once the returned function is called, every way
// the file `name` in dir was touched: "moved in", "created" or "written".
// An atomic install shows only "moved in".
func watchWrites(t *testing.T, dir, name string) func() []string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MODIFY|unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO); err != nil {
		t.Fatalf("inotify watch: %v", err)
	}
	return func() []string {
		defer unix.Close(fd)
		var seen []string
		buf := make([]byte, 64<<10)
		for {
			n, err := unix.Read(fd, buf)
			if n <= 0 || err != nil {
				return seen
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
				off += unix.SizeofInotifyEvent + int(ev.Len)
				if string(trimNUL(nameBytes)) != name {
					continue
				}
				switch {
				case ev.Mask&unix.IN_MOVED_TO != 0:
					seen = append(seen, "moved in")
				case ev.Mask&unix.IN_CREATE != 0:
					seen = append(seen, "created")
				default:
					seen = append(seen, "written")
				}
			}
		}
	}
}

func trimNUL(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}
