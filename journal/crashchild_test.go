package journal

import (
	"bufio"
	"os"
	"os/exec"
	"testing"
	"time"
)

// crashRound re-executes this test binary as a child running test with
// env set to dir (the test turns itself into the child when it sees env),
// hands each line the child prints to onLine, and SIGKILLs the child (no
// cleanup, no Close) at the first line onLine says to kill at. Lines the
// child printed before it died still count and go to onLine too. The test
// fails, naming round, if the child exits first or prints no line to
// kill at within 60 s.
func crashRound(t *testing.T, round, test, env, dir string, onLine func(line string) (kill bool)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	deadline := time.After(60 * time.Second)
	for kill := false; !kill; {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("%s: the child exited before it was killed", round)
			}
			kill = onLine(l)
		case <-deadline:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("%s: the child printed no line to kill it at in 60 s", round)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		onLine(l)
	}
	cmd.Wait()
}
