// Renders a prompt as Ollama's chat handler does, with Go's own text/template: the Modelfile's SYSTEM put first
// where the conversation has no system message, consecutive messages of one role merged, then the template run
// over .Messages with missingkey=zero. Reads {"template", "system", "messages"} as JSON on stdin (a JSON list of
// such requests), writes a JSON list of the rendered prompts. Used by tests/test_modelfile.py.
package main

import (
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type Request struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []Message `json:"messages"`
}

func collate(msgs []Message) (string, []*Message) {
	var system []string
	var out []*Message
	for i := range msgs {
		if msgs[i].Role == "system" {
			system = append(system, msgs[i].Content)
		}
		if len(out) > 0 && out[len(out)-1].Role == msgs[i].Role && msgs[i].Role != "tool" {
			out[len(out)-1].Content += "\n\n" + msgs[i].Content
		} else {
			m := msgs[i]
			out = append(out, &m)
		}
	}
	return strings.Join(system, "\n\n"), out
}

func render(r Request) (string, error) {
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(r.Template)
	if err != nil {
		return "", err
	}
	msgs := r.Messages
	if r.System != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		msgs = append([]Message{{Role: "system", Content: r.System}}, msgs...)
	}
	system, collated := collate(msgs)
	var b strings.Builder
	err = tmpl.Execute(&b, map[string]any{
		"System": system, "Messages": collated, "Tools": nil, "Response": "", "Think": false, "IsThinkSet": false,
	})
	return b.String(), err
}

func main() {
	var reqs []Request
	if err := json.NewDecoder(os.Stdin).Decode(&reqs); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(2)
	}
	var outs []string
	for _, r := range reqs {
		s, err := render(r)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		outs = append(outs, s)
	}
	json.NewEncoder(os.Stdout).Encode(outs)
}
