"""Parsing a small model's question lists, masking within the token budget, adaptive temperature."""

from __future__ import annotations

from precog.precompute.answer import ChosenAnswer, answer_grounded, choose_answer, supporting_passage
from precog.precompute.questions import (
    EXAMPLE_QUESTIONS,
    AdaptiveAsking,
    grounded,
    parse_questions,
    passage,
    question_prompt,
)
from precog.precompute.tokens import SimpleTokenizer
from precog.precompute.upstream import Completion


def test_parses_numbered_bulleted_and_run_together_questions() -> None:
    text = (
        "Sure! Here are 4 questions:\n"
        "1. What is anarchism?\n"
        "2) **Who founded the first anarchist school?**\n"
        '- "When did Alabama become a state?"\n'
        "Q4: Why is the sky blue? How do rainbows form?\n"
        "This line is a statement.\n"
        "How many moons does Mars have\n"
        "Is it?\n"
    )
    assert parse_questions(text) == [
        "What is anarchism?",
        "Who founded the first anarchist school?",
        "When did Alabama become a state?",
        "Why is the sky blue?",
        "How do rainbows form?",
        "How many moons does Mars have?",
    ]


def test_keeps_the_question_after_chatter_and_drops_questions_to_the_user() -> None:
    text = (
        "So, to answer the user's question, I'd be happy to. What would you like me to create?\n"
        "Great document. Where do pelicans nest in the delta?\n"
        "Would you like more questions?\n"
        "Can you write 5 questions that will make a significant number of readers think?"
    )
    assert parse_questions(text) == ["Where do pelicans nest in the delta?"]


def test_a_question_quoted_in_chatter_is_taken_from_its_quote() -> None:
    text = (
        'A user might ask "What is specular reflection?\n'
        'The answer to the last question was "What is a vaccine hypothesis?"\n'
        "and “Why is albedo measured from 0 to 1?”\n"
        'He said "hello" and asked: Is "cursive" a script?\n'
        'What does "Who is John Galt" mean?'
    )
    assert parse_questions(text) == [
        "What is specular reflection?",
        "What is a vaccine hypothesis?",
        "Why is albedo measured from 0 to 1?",
        'Is "cursive" a script?',
        'What does "Who is John Galt" mean?',
    ]


def test_output_cut_at_max_tokens_loses_its_last_line() -> None:
    text = "1. What is albedo?\n2. How is albedo measured?\n3. What role does anarchism play in the"
    assert parse_questions(text)[-1] == "What role does anarchism play in the?"
    assert parse_questions(text, cut=True) == ["What is albedo?", "How is albedo measured?"]


def test_drops_repeats_and_already_asked_questions() -> None:
    text = "1. What is anarchism?\n2. what is  ANARCHISM?\n3. Where is Alabama located?"
    assert parse_questions(text, exclude=["Where is Alabama located?"]) == ["What is anarchism?"]


def test_garbage_output_yields_no_questions() -> None:
    assert parse_questions("<html>\x00\x01 ??? !!\n{}") == []


def test_masking_keeps_newest_questions_that_fit_the_budget() -> None:
    tok = SimpleTokenizer()
    asked = [f"What is fact number {i} of the chunk?" for i in range(50)]
    budget = 120
    messages, shown = question_prompt("The chunk text.", 3, asked, budget, tok.count)
    user = messages[-1]["content"]
    masked = [line[2:] for line in user.splitlines() if line.startswith("- ")]
    assert masked, "some questions must fit"
    assert masked[0] == asked[-1]
    assert masked == list(reversed(asked))[: len(masked)]
    assert shown == len(masked)
    assert len(masked) < len(asked)
    assert sum(tok.count(m["content"]) for m in messages) <= budget


def test_the_mask_comes_before_the_document_so_the_reply_does_not_continue_it() -> None:
    messages, _ = question_prompt("Albedo.", 5, ["What is albedo?"], 500, SimpleTokenizer().count)
    user = messages[-1]["content"]
    assert user.index("- What is albedo?") < user.index("Document:\nAlbedo.")
    assert user.endswith("one question per line.")


def test_no_mask_section_without_asked_questions() -> None:
    messages, shown = question_prompt("Chunk.", 5, [], 500, SimpleTokenizer().count)
    assert shown == 0
    assert "already asked" not in messages[-1]["content"]
    assert "Write 5 different questions" in messages[-1]["content"]


def test_temperature_is_judged_per_turn_raised_on_duplicates_and_lowered_on_chatter() -> None:
    asking = AdaptiveAsking(0.7, 0.15, 1.0, 0.5, window=3, asked_per_round=5)
    for written, duplicates in [(5, 5), (5, 5)]:
        asking.observe(written, duplicates, 0, 10)
        assert asking.temperature == 0.7, "not judged before a whole turn"
    asking.observe(5, 0, 0, 10)
    assert asking.temperature == 0.85, "10 of 15 duplicates over the turn"
    for _ in range(3):
        asking.observe(5, 2, 0, 10)
    assert asking.temperature == 0.85, "6 of 15 is below the trigger"
    for _ in range(6):
        asking.observe(5, 4, 0, 10)
    assert asking.temperature == 1.0, "capped"
    for written in (1, 2, 3):
        asking.observe(written, 0, 0, 10)
    assert asking.temperature == 0.85, "6 questions of 15 asked for: chatter, cooled"
    for _ in range(6):
        asking.observe(0, 0, 0, 10)
    assert asking.temperature == 0.7, "never below the start"
    assert asking.mask_limit is None, "no copies: the mask stays whole"


def test_a_writer_that_copies_the_mask_is_shown_half_as_many_each_turn() -> None:
    asking = AdaptiveAsking(0.7, 0.15, 1.0, 0.5, window=3, asked_per_round=5)
    for masked in (12, 14, 16):
        asking.observe(5, 1, 1, masked)
    assert asking.mask_limit is None, "3 copies of 15 is under a quarter"
    for masked in (0, 16, 18):
        asking.observe(5, 2, 2, masked)
    assert asking.mask_limit == 9, "6 of 15 copied: half of what the turn's last round showed"
    for _ in range(3):
        asking.observe(4, 4, 4, 9)
    assert asking.mask_limit == 4
    messages, shown = question_prompt("Chunk.", 5, [f"Old {i}?" for i in range(30)], 5000, len, mask_limit=4)
    user = messages[-1]["content"]
    assert shown == 4 and "- Old 29?" in user and "- Old 26?" in user and "- Old 25?" not in user
    assert question_prompt("Chunk.", 5, ["Old?"], 5000, len, mask_limit=0).masked == 0


def test_grounded_keeps_questions_about_the_document_and_drops_the_rest() -> None:
    document = "Mount Etna is the most active volcano in Europe. Farmers grow pistachios on its fertile soil."
    questions = [
        "What is the capital of France?",
        "Which volcano is the most active in Europe?",
        "What do farmers grow on the slopes of Etna?",
        "Why did it happen?",
        "What are the different volcanoes of the world, and which erupted last year?",
    ]
    assert grounded(questions, document) == questions[1:3]


def test_prompt_families_differ_only_by_the_worked_example() -> None:
    plain = question_prompt("Chunk.", 5, ["Asked before?"], 500, SimpleTokenizer().count).messages
    example = question_prompt(
        "Chunk.", 5, ["Asked before?"], 500, SimpleTokenizer().count, with_example=True
    ).messages
    assert [m["role"] for m in plain] == ["system", "user"]
    assert [m["role"] for m in example] == ["system", "user", "assistant", "user"]
    assert example[0] == plain[0] and example[-1] == plain[-1]
    assert example[2]["content"].splitlines() == list(EXAMPLE_QUESTIONS)


def test_passages_cycle_over_two_sentence_windows_after_the_lead() -> None:
    document = "Etna\n\nEtna is a volcano. It erupts often. Farmers grow grapes on it! Is it safe? Mostly."
    windows = [passage(document, index) for index in range(4)]
    assert windows[:3] == [
        "Etna\n\nEtna is a volcano. It erupts often.",
        "Etna\n\nFarmers grow grapes on it! Is it safe?",
        "Etna\n\nMostly.",
    ]
    assert windows[3] == windows[0]
    assert passage("A single sentence.", 2) == "A single sentence."
    assert passage("", 0) == ""


def test_an_answer_is_grounded_only_when_its_chunk_holds_what_it_adds() -> None:
    chunk = (
        "Alabama is a state in the Southeastern region of the United States, bordered by Tennessee to the "
        "north and Georgia to the east. It is the 30th largest by area."
    )
    assert answer_grounded("Georgia borders Alabama on the east.", "Which state is east of Alabama?", chunk)
    assert answer_grounded("According to the document, it is the 30th.", "What is its rank by area?", chunk)
    capital = "What is the capital of Alabama?"
    assert not answer_grounded("The capital of Alabama is Montgomery.", capital, chunk)
    assert not answer_grounded("It is the 24th largest by area.", "What is its rank by area?", chunk)
    assert answer_grounded("Alabama.", "Which state is east of Georgia, Alabama?", chunk)


VOLCANO = (
    "Mount Etna\n\nMount Etna is an active stratovolcano on the east coast of Sicily. It is the tallest "
    "active volcano in Europe outside the Caucasus. Its height was 3,357 metres in 2021. Farmers grow "
    "pistachios on its slopes."
)


def test_the_supporting_passage_is_the_sentence_that_holds_the_question() -> None:
    assert supporting_passage("What is Mount Etna?", VOLCANO).startswith("Mount Etna is an active")
    # the heading counts for every sentence; a pronoun sentence comes after the one before it
    assert supporting_passage("What grows on the slopes of Etna?", VOLCANO) == (
        "Farmers grow pistachios on its slopes."
    )
    assert supporting_passage("Which is the tallest active volcano in Europe?", VOLCANO) == (
        "Mount Etna is an active stratovolcano on the east coast of Sicily. It is the tallest active "
        "volcano in Europe outside the Caucasus."
    )
    assert supporting_passage("How tall was Etna in 2021?", VOLCANO).endswith("3,357 metres in 2021.")
    assert supporting_passage("According to the text, where is Mount Etna?", VOLCANO).endswith("Sicily.")
    for missing in (
        "How tall was Etna in 1990?",  # a number the chunk does not hold
        "What is the capital of Sicily?",  # one word of two
        "When did Etna last erupt?",
        "What is the tallest volcano in Asia?",
    ):
        assert supporting_passage(missing, VOLCANO) == "", missing


def test_the_model_answer_is_kept_when_grounded_and_quoted_over_when_not() -> None:
    question = "Where is Mount Etna?"
    grounded = Completion("Mount Etna is on the east coast of Sicily.", 10, 10)
    invented = Completion("Mount Etna is in Tuscany, near Florence.", 10, 10)
    cut = Completion("Mount Etna stands on", 10, 10, "length")
    assert choose_answer(grounded, question, VOLCANO, True) == ChosenAnswer(grounded.text, "model")
    quoted = choose_answer(invented, question, VOLCANO, True)
    assert quoted.source == "chunk" and quoted.text.endswith("coast of Sicily.")
    assert choose_answer(cut, question, VOLCANO, True).source == "chunk"
    assert choose_answer(invented, question, VOLCANO, False) == ChosenAnswer(invented.text, None)
    assert choose_answer(cut, question, VOLCANO, False) == ChosenAnswer("", None)
    assert choose_answer(invented, "What is the capital of Sicily?", VOLCANO, True).source is None
