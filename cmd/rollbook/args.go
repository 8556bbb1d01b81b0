package main

import (
	"flag"
	"fmt"
)

// parseArgs parses a command line whose flags may come before, between and
// after its positional arguments (`rollbook history ns/r --dir d` as well
// as `rollbook history --dir d ns/r`): Go's flag package stops at the first
// positional argument and would leave every flag after it unparsed,
// silently. A "--" ends the flags; what follows is positional. Afterwards
// fs.Args() holds the positional arguments in order.
func parseArgs(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	// NB: parsing "--" alone sets fs.Args() to what follows it and no flag.
	return fs.Parse(append([]string{"--"}, pos...))
}

// noArgs refuses positional arguments a command does not take, naming its
// usage: an argument that is ignored looks like one that worked.
func noArgs(fs *flag.FlagSet, usage string) error {
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: usage: %s", fs.Args(), usage)
	}
	return nil
}

// parseFlags is parseArgs for a command that takes no positional
// argument: one given is an error, not ignored.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: %s takes flags only (-h lists them)", fs.Args(), fs.Name())
	}
	return nil
}
