"""Inputs for the mktok goldens: hard texts for the tokenizer and chat
template cases (beyond ../shared's glm-render-goldens.json). Imported by
gen_goldens.py; the goldens it writes carry these inputs, so the tests never
import this file."""

_weather = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city — 天气 \"now\"",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "days": {"type": "integer", "minimum": 1}},
                   "required": ["city"]}}}
_search = {"type": "function", "function": {
    "name": "search", "description": "Search the docs", "strict": True,
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
_deferred = {"type": "function", "function": {
    "name": "slow_tool", "description": "Loaded on demand", "defer_loading": True,
    "parameters": {"type": "object", "properties": {}}}}
_flat = {"name": "calc", "description": "Evaluate arithmetic", "parameters": {
    "type": "object", "properties": {"expr": {"type": "string"}}}, "strict": False}

TEMPLATE_CASES = [
    {"name": "tools_defer_strict_flat", "tools": [_weather, _search, _deferred, _flat],
     "messages": [{"role": "user", "content": "Use a tool."}], "add_generation_prompt": True},
    {"name": "tools_empty_list", "tools": [], "messages": [{"role": "user", "content": "No tools."}],
     "add_generation_prompt": True},
    {"name": "tool_call_mapping_args", "tools": [_weather],
     "messages": [
         {"role": "user", "content": "Plan a trip."},
         {"role": "assistant", "content": "", "reasoning_content": "Call it with odd values.",
          "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {
              "city": "São Paulo", "days": 3, "ratio": 0.25, "exact": False, "none": None,
              "nested": {"b": [1, 2.5, "x"], "a": {"deep": True}}, "list": ["Zürich", "東京"],
              "quoted": "say \"hi\"\n", "json_string": "{\"k\": 1}", "empty": ""}}}]},
         {"role": "tool", "content": "{\"ok\": true}"}],
     "add_generation_prompt": True},
    {"name": "tool_call_flat_and_multiple", "tools": [_flat, _search],
     "messages": [
         {"role": "user", "content": "Two things."},
         {"role": "assistant", "content": "Working on it.",
          "tool_calls": [{"name": "calc", "arguments": {"expr": "2*(3+4)"}},
                         {"function": {"name": "search", "arguments": {}}}]},
         {"role": "tool", "content": "14"},
         {"role": "tool", "content": [{"type": "text", "text": "result "}, "list item"]},
         {"role": "assistant", "content": "Done: 14."}],
     "add_generation_prompt": False},
    {"name": "tool_results_output_list", "tools": [_search],
     "messages": [
         {"role": "user", "content": "Look it up."},
         {"role": "assistant", "content": None, "tool_calls": [
             {"function": {"name": "search", "arguments": {"q": "ring buffer"}}}]},
         {"role": "tool", "content": [{"output": "first hit"}, {"output": "second hit"}]},
         {"role": "user", "content": "Thanks"}],
     "add_generation_prompt": True},
    {"name": "tool_reference_result", "tools": [_weather, _search, _deferred],
     "messages": [
         {"role": "user", "content": "Which tools?"},
         {"role": "assistant", "content": "", "tool_calls": [
             {"function": {"name": "search", "arguments": {"q": "tools"}}}]},
         {"role": "tool", "content": [{"type": "tool_reference", "name": "slow_tool"},
                                      {"type": "tool_reference", "name": "get_weather"}]}],
     "add_generation_prompt": True},
    {"name": "two_assistants_after_last_user",
     "messages": [
         {"role": "user", "content": "Go"},
         {"role": "assistant", "content": "step one", "reasoning_content": "think A",
          "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]},
         {"role": "tool", "content": "r1"},
         {"role": "assistant", "content": "step two"},
         {"role": "tool", "content": "r2"},
         {"role": "assistant", "content": "<think>think C</think>final"}],
     "add_generation_prompt": False},
    {"name": "reasoning_before_last_user_cleared",
     "messages": [
         {"role": "system", "content": "Be exact."},
         {"role": "user", "content": "Q1"},
         {"role": "assistant", "content": "<think>hidden</think>\n\nA1  ", "reasoning_content": None},
         {"role": "user", "content": "Q2"},
         {"role": "assistant", "content": "  A2\n", "reasoning_content": "shown"}],
     "add_generation_prompt": False},
    {"name": "clear_thinking_false_keeps_all", "clear_thinking": False,
     "messages": [
         {"role": "user", "content": "Q1"},
         {"role": "assistant", "content": "A1", "reasoning_content": "R1"},
         {"role": "user", "content": "Q2"},
         {"role": "assistant", "content": "<think>R2</think>A2"},
         {"role": "user", "content": "Q3"}],
     "add_generation_prompt": True},
    {"name": "clear_thinking_true",
     "clear_thinking": True,
     "messages": [
         {"role": "user", "content": "Q1"},
         {"role": "assistant", "content": "A1", "reasoning_content": "R1"},
         {"role": "user", "content": "Q2"}],
     "add_generation_prompt": True},
    {"name": "think_edge_cases",
     "messages": [
         {"role": "user", "content": "edge"},
         {"role": "assistant", "content": "<think>a</think>b</think>c"},
         {"role": "assistant", "content": "only <think> open"},
         {"role": "assistant", "content": "pre<think>x</think>post", "reasoning_content": ""},
         {"role": "assistant", "content": "</think>no open"}],
     "add_generation_prompt": False},
    {"name": "thinking_off_with_tools_effort_high", "tools": [_weather], "enable_thinking": False,
     "reasoning_effort": "high",
     "messages": [{"role": "user", "content": "Weather?"}], "add_generation_prompt": True},
    {"name": "effort_high_with_tools", "tools": [_search], "reasoning_effort": "high",
     "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "Find."}],
     "add_generation_prompt": True},
    {"name": "effort_medium_thinking_true", "reasoning_effort": "medium", "enable_thinking": True,
     "messages": [{"role": "user", "content": "Hmm"}], "add_generation_prompt": True},
    {"name": "enable_thinking_none", "enable_thinking": None,
     "messages": [{"role": "user", "content": "Hmm"}], "add_generation_prompt": True},
    {"name": "media_parts",
     "messages": [
         {"role": "system", "content": [{"type": "text", "text": "System in parts."}]},
         {"role": "user", "content": [
             {"type": "text", "text": "Look: "}, {"type": "image"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "video"}, {"type": "video_url"}, {"type": "audio"}, {"type": "audio_url"},
             {"type": "input_audio"}, {"type": "unknown", "text": "dropped"}, "raw string part", 7]},
         {"role": "assistant", "content": [{"type": "text", "text": "Seen "}, {"type": "text", "text": "it."}]}],
     "add_generation_prompt": True},
    {"name": "unknown_role_and_empty_content",
     "messages": [
         {"role": "developer", "content": "ignored"},
         {"role": "user", "content": ""},
         {"role": "assistant", "content": "   "}],
     "add_generation_prompt": True},
    {"name": "empty_messages_gen", "messages": [], "add_generation_prompt": True},
    {"name": "no_gen_prompt_ends_user",
     "messages": [{"role": "user", "content": "unicode ✓ 日本語 🎉 and a\nnewline\ttab"}],
     "add_generation_prompt": False},
    {"name": "long_multi_turn",
     "messages": [m for i in range(4) for m in (
         {"role": "user", "content": f"Question {i}?"},
         {"role": "assistant", "content": f"Answer {i}.", "reasoning_content": f"Reason {i}."})],
     "add_generation_prompt": True, "enable_thinking": True},
    {"name": "tool_first_message",
     "messages": [{"role": "tool", "content": "orphan result"}, {"role": "user", "content": "ok"}],
     "add_generation_prompt": True},
]

# Where GLM-4.7's template differs from GLM-5.2's: newlines around <think>
# blocks, whitespace-only and empty reasoning, clear_thinking, tool results as
# lists of strings and of {output} items, consecutive list results, thinking off.
GLM47_CASES = [
    {"name": "g47_think_newlines", "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\n\n  plan it \n\n</think>\n\n  Hello! \n"},
        {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "<think>\nsecond\n</think>\nDone"}], "add_generation_prompt": True},
    {"name": "g47_reasoning_ws_empty", "messages": [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A", "reasoning_content": "   "},
        {"role": "assistant", "content": "B", "reasoning_content": ""},
        {"role": "assistant", "content": "C", "reasoning_content": " r "}], "add_generation_prompt": False},
    {"name": "g47_clear_thinking_false", "clear_thinking": False, "messages": [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "<think>old</think>A1"},
        {"role": "user", "content": [{"type": "text", "text": "Q2"}, "tail"]}], "add_generation_prompt": True},
    {"name": "g47_tool_lists", "tools": [_weather, _flat], "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}},
            {"name": "calc", "arguments": {"expr": "1+1"}}]},
        {"role": "tool", "content": ["sunny", {"output": "12C"}]},
        {"role": "tool", "content": [{"output": "2"}]},
        {"role": "tool", "content": "plain"},
        {"role": "tool", "content": "plain2"}], "add_generation_prompt": True, "enable_thinking": False},
    {"name": "g47_system_list_thinking_off", "enable_thinking": False, "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "image"}]},
        {"role": "user", "content": "日本語"}], "add_generation_prompt": True},
]

HARD_TEXTS = [
    "", " ", "  ", "\n", "\n\n\n", "\r\n", "\t", " \t \n ", "a", "A", "Hello, world!",
    "Hello world", " leading space", "trailing space ", "multiple   spaces   here",
    "line one\nline two\r\nline three\rline four",
    "it's they're we've I'm you'll he'd IT'S THEY'RE WE'VE I'M YOU'LL HE'D 'S",
    "don't   can't", "1", "12", "123", "1234", "12345678901234567890", "3.14159", "-42", "1,000,000",
    "2024-06-30T12:30:45Z", "0xDEADBEEF", "v1.2.3-rc4", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "①②③ ⅠⅡⅢ ½",
    "你好，世界！", "今天天气很好，我们去公园散步吧。", "东京の朝は早い。", "ひらがなとカタカナ",
    "안녕하세요, 만나서 반갑습니다!", "مرحبا بكم، وشكرا جزيلا.", "Здравствуйте, как у вас дела?",
    "नमस्ते, आप कैसे हैं?", "Καλημέρα", "Zażółć gęślą jaźń", "ไทย สวัสดีครับ", "עברית שלום",
    "mixed English和中文mixed", "日本語とEnglishと한국어", "Привет world 123 мир",
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "👩‍💻 coding", "🏳️‍🌈", "🇳🇴🇯🇵", "❤️‍🔥", "🚀🚀🚀", "a😀b", "😀😀 😀",
    "e\u0301 combining", "\u00a0nbsp\u00a0", "ideographic\u3000space", "zero\u200bwidth",
    "line\u2028separator", "tab\there", "\u0085nel",
    "[gMASK]<sop><|user|>Hi<|assistant|><think>", "<|endoftext|>", "text<|user|>more",
    "<think>reasoning</think>answer", "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
    "<|observation|><tool_response>{\"temp\": 18}</tool_response>", "/nothink", "Quick /nothink",
    "/nothinking", "a/nothink", "<|user", "<think", "</think >", "< think>", "[gMASK][gMASK]", "[MASK]x[sMASK]",
    "<|begin_of_image|><|image|><|end_of_image|>", "<|code_prefix|>def f():<|code_suffix|>return 1<|code_middle|>",
    "<|begin_of_box|>42<|end_of_box|>", "<|user|><|user|>", "<<|user|>>",
    "int main(void) { return 0; }", "def f(x):\n    return x ** 2\n", "    indented\n\tand tabbed\n",
    "{\"key\": [1, 2, {\"nested\": null}], \"ok\": true}", "for i in $(seq 1 10); do echo $i; done",
    "SELECT * FROM t WHERE x >= 10;", "path/to/file.txt", "https://example.org/a?b=c&d=e#f",
    "user@example.com", "!!!???...", "$$$ %%% ^^^", "(((nested)))", "a\n\n\n\nb", "end with newline\n",
    "   \n   \n", "x" * 300, "ab" * 100, "The quick brown fox jumps over the lazy dog.",
    "The lighthouse keeper kept two logbooks.", "ünïcödé àccénts",
]
